package blockfs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// needRoot skips a test that binds loop devices and mounts, unless it
// runs as root with the tools.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (loop devices and mounts); CI runs it as root")
	}
	for _, tool := range []string{"losetup", "blkid", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (make deps installs util-linux and e2fsprogs)", tool)
		}
	}
}

// newDiskFile makes a sparse file of n bytes (zeros: an empty disk).
func newDiskFile(t *testing.T, n int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(n); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// cleanupMount takes dir and file down at the end of the test, whatever
// state the test left them in.
func cleanupMount(t *testing.T, a Attacher, file, dir string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := a.Unmount(ctx, file, dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

// TestMountMakesExt4OnceAndKeepsData mounts an empty disk file (ext4 is
// made), writes, mounts again while mounted (nothing changes), unmounts
// (the loop device goes), mounts again (no new file system: the data is
// there).
func TestMountMakesExt4OnceAndKeepsData(t *testing.T) {
	needRoot(t)
	ctx := testContext(t)
	var a Attacher
	file := newDiskFile(t, 64<<20)
	dir := filepath.Join(t.TempDir(), "mnt")
	cleanupMount(t, a, file, dir)

	at, err := a.Mount(ctx, file, dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !at.Formatted || at.FSType != "ext4" || !strings.HasPrefix(at.Device, "/dev/loop") {
		t.Fatalf("first mount: got %+v, want ext4 made on a loop device", at)
	}
	if err := os.WriteFile(filepath.Join(dir, "hello"), []byte("weft"), 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := a.Mount(ctx, file, dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if again.Formatted || again.Device != at.Device {
		t.Fatalf("second mount: got %+v, want the same device %s, not formatted", again, at.Device)
	}
	if devs, _ := a.Loops.Find(file); len(devs) != 1 {
		t.Fatalf("loop devices on the file: got %v, want one", devs)
	}
	if err := a.Unmount(ctx, file, dir); err != nil {
		t.Fatal(err)
	}
	if ok, _ := IsMountPoint(dir); ok {
		t.Fatalf("%s is still mounted after Unmount", dir)
	}
	if devs, _ := a.Loops.Find(file); len(devs) != 0 {
		t.Fatalf("loop devices after Unmount: got %v, want none", devs)
	}
	if err := a.Unmount(ctx, file, dir); err != nil {
		t.Fatalf("second Unmount: got %v, want nil (idempotent)", err)
	}
	re, err := a.Mount(ctx, file, dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if re.Formatted {
		t.Fatalf("remount: the disk was formatted again (%+v)", re)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "hello")); err != nil || string(b) != "weft" {
		t.Fatalf("after remount: got %q, %v, want weft", b, err)
	}
}

// TestMountRefusesUnknownData never formats a disk that holds data blkid
// cannot name.
func TestMountRefusesUnknownData(t *testing.T) {
	needRoot(t)
	ctx := testContext(t)
	var a Attacher
	file := newDiskFile(t, 16<<20)
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("precious bytes, no file system"), 4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	dir := filepath.Join(t.TempDir(), "mnt")
	cleanupMount(t, a, file, dir)
	_, err = a.Mount(ctx, file, dir, 0)
	if !errors.Is(err, ErrUnknownData) {
		t.Fatalf("mount of a disk with unknown data: got %v, want ErrUnknownData", err)
	}
	if typ, err := FSType(ctx, file); err != nil || typ != "" {
		t.Fatalf("after the refusal: blkid says %q, %v; want nothing made", typ, err)
	}
	if devs, err := a.Loops.Find(file); err != nil || len(devs) != 0 {
		t.Fatalf("after the refusal: loop devices %v, %v; want none left bound", devs, err)
	}
}

// TestMountReplacesStaleMount: when the file behind a mount is replaced
// (the FUSE file of a restarted daemon: same path, another file), Mount
// drops the stale mount and mounts the new file; Unmount frees both
// loop devices.
func TestMountReplacesStaleMount(t *testing.T) {
	needRoot(t)
	ctx := testContext(t)
	var a Attacher
	file := newDiskFile(t, 64<<20)
	dir := filepath.Join(t.TempDir(), "mnt")
	cleanupMount(t, a, file, dir)
	old, err := a.Mount(ctx, file, dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "v"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unixSync(); err != nil {
		t.Fatal(err)
	}
	oldID, err := statID(file)
	if err != nil {
		t.Fatal(err)
	}
	// Same path, new inode, same content.
	if out, err := exec.Command("cp", "--sparse=always", file, file+".new").CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	if err := os.Rename(file+".new", file); err != nil {
		t.Fatal(err)
	}
	at, err := a.Mount(ctx, file, dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	newID, err := statID(file)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := loopBacking(at.Device); b != newID || at.Formatted {
		t.Fatalf("mount over a stale one: got %+v on file %v, want a device on the new file %v, not formatted", at, b, newID)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "v")); err != nil || string(b) != "1" {
		t.Fatalf("after the remount: got %q, %v, want 1", b, err)
	}
	// The stale device goes once the kernel lets go of the detached file
	// system, a moment after the lazy unmount (the device is set to clear
	// itself then).
	deadline := time.Now().Add(10 * time.Second)
	for {
		all, err := a.Loops.bound()
		if err != nil {
			t.Fatal(err)
		}
		var stale []string
		for dev, id := range all {
			if id == oldID {
				stale = append(stale, dev)
			}
		}
		if len(stale) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v still bound to the replaced file (the stale mount was %s)", stale, old.Device)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUnmountBusy keeps a file system with an open file mounted and says
// so with ErrBusy.
func TestUnmountBusy(t *testing.T) {
	needRoot(t)
	ctx := testContext(t)
	var a Attacher
	file := newDiskFile(t, 64<<20)
	dir := filepath.Join(t.TempDir(), "mnt")
	cleanupMount(t, a, file, dir)
	if _, err := a.Mount(ctx, file, dir, 0); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "open"))
	if err != nil {
		t.Fatal(err)
	}
	err = a.Unmount(ctx, file, dir)
	f.Close()
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("unmount with an open file: got %v, want ErrBusy", err)
	}
	if ok, _ := IsMountPoint(dir); !ok {
		t.Fatalf("%s was unmounted although busy", dir)
	}
}

func unixSync() error {
	return exec.Command("sync").Run()
}
