package blockfs

import (
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestMountReadOnlyWritesNothing: a read-only mount neither formats an
// empty disk nor replays the journal of a disk copied while it was
// mounted (ext4's needs_recovery set): the disk file's bytes stay as they
// were, and the file written before the copy reads.
func TestMountReadOnlyWritesNothing(t *testing.T) {
	needRoot(t)
	ctx := testContext(t)
	var a Attacher

	empty := newDiskFile(t, 64<<20)
	dir := filepath.Join(t.TempDir(), "mnt")
	cleanupMount(t, a, empty, dir)
	if _, err := a.MountReadOnly(ctx, empty, dir, 0); !errors.Is(err, ErrNoFileSystem) {
		t.Fatalf("read-only mount of an empty disk: %v, want ErrNoFileSystem", err)
	}
	if zero, err := startsWithZeros(empty, 64<<20); err != nil || !zero {
		t.Fatalf("the empty disk after a refused read-only mount: zeros %v, %v; want zeros", zero, err)
	}
	if devs, _ := a.Loops.Find(empty); len(devs) != 0 {
		t.Fatalf("the refused read-only mount left %v bound", devs)
	}

	// A disk copied while mounted, after a write: its journal needs
	// replaying.
	file := newDiskFile(t, 64<<20)
	live := filepath.Join(t.TempDir(), "live")
	cleanupMount(t, a, file, live)
	if _, err := a.Mount(ctx, file, live, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(live, "v"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unixSync(); err != nil {
		t.Fatal(err)
	}
	copied := filepath.Join(t.TempDir(), "copy.img")
	if out, err := exec.Command("cp", "--sparse=always", file, copied).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	if out, _ := exec.Command("dumpe2fs", "-h", copied).CombinedOutput(); !strings.Contains(string(out), "needs_recovery") {
		t.Logf("the copy's features do not show needs_recovery (dumpe2fs: %.200s); the check still holds", out)
	}
	before := fileSum(t, copied)
	ro := filepath.Join(t.TempDir(), "ro")
	cleanupMount(t, a, copied, ro)
	at, err := a.MountReadOnly(ctx, copied, ro, 0)
	if err != nil {
		t.Fatalf("read-only mount of the copy: %v", err)
	}
	if !a.Loops.ReadOnly(at.Device) {
		t.Fatalf("read-only mount on %s, a writable loop device", at.Device)
	}
	if again, err := a.MountReadOnly(ctx, copied, ro, 0); err != nil || again.Device != at.Device {
		t.Fatalf("read-only mount again: %+v, %v; want %s as it is", again, err, at.Device)
	}
	if b, err := os.ReadFile(filepath.Join(ro, "v")); err != nil || string(b) != "1" {
		t.Fatalf("the copy's file: %q, %v; want 1", b, err)
	}
	if err := a.Unmount(ctx, copied, ro); err != nil {
		t.Fatal(err)
	}
	if fileSum(t, copied) != before {
		t.Fatal("a read-only mount and unmount changed the disk's bytes")
	}
}
