package blockfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
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

// TestMountRefusesLiveOtherMount: a directory mounted from a loop device
// on another live file (here: the same path, replaced by a copy with
// another inode) is not taken for stale: Mount refuses, and the mount and
// its data stay as they were.
func TestMountRefusesLiveOtherMount(t *testing.T) {
	needRoot(t)
	ctx := testContext(t)
	var a Attacher
	file := newDiskFile(t, 64<<20)
	dir := filepath.Join(t.TempDir(), "mnt")
	old, err := a.Mount(ctx, file, dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Unmount(dir, 0)
		DetachDevice(context.Background(), old.Device)
	})
	if err := os.WriteFile(filepath.Join(dir, "v"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unixSync(); err != nil {
		t.Fatal(err)
	}
	// Same path, new inode, same content: both files live.
	if out, err := exec.Command("cp", "--sparse=always", file, file+".new").CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	if err := os.Rename(file+".new", file); err != nil {
		t.Fatal(err)
	}
	cleanupMount(t, a, file, filepath.Join(t.TempDir(), "unused"))
	_, err = a.Mount(ctx, file, dir, 0)
	if !errors.Is(err, ErrLiveMount) {
		t.Fatalf("mount over a live mount of another file: got %v, want ErrLiveMount", err)
	}
	m, ok, err := mountAt(dir)
	if err != nil || !ok || loopByDevice(a.sysDevBlock(), m.Device) != old.Device {
		t.Fatalf("after the refusal: %s holds %+v (%v, %v), want still %s", dir, m, ok, err, old.Device)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "v")); err != nil || string(b) != "1" {
		t.Fatalf("after the refusal: got %q, %v, want 1", b, err)
	}
	if devs, _ := a.Loops.Find(file); len(devs) != 0 {
		t.Fatalf("the refused mount left %v bound to the new file", devs)
	}
}

// TestMountReplacesDeadMount: when the FUSE server behind a mount's loop
// device dies (its connection aborted, as when weft's daemon is killed)
// and the file is served again at the same path, Mount detaches the dead
// mount and mounts the new file, with the data synced before; the dead
// device goes.
func TestMountReplacesDeadMount(t *testing.T) {
	needRoot(t)
	ctx := testContext(t)
	var a Attacher
	under := t.TempDir()
	if err := os.WriteFile(filepath.Join(under, "disk.img"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(under, "disk.img"), 64<<20); err != nil {
		t.Fatal(err)
	}
	fuseDir := filepath.Join(t.TempDir(), "fuse")
	if err := os.Mkdir(fuseDir, 0o755); err != nil {
		t.Fatal(err)
	}
	serve := func() {
		root, err := fs.NewLoopbackRoot(under)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := fs.Mount(fuseDir, root, &fs.Options{MountOptions: fuse.MountOptions{DirectMount: true}})
		if err != nil {
			t.Skipf("FUSE mount: %v", err)
		}
		t.Cleanup(func() { srv.Unmount(); unix.Unmount(fuseDir, unix.MNT_DETACH) })
	}
	serve()
	file := filepath.Join(fuseDir, "disk.img")
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
	// The server dies: abort its connection, detach its mount, serve the
	// same files again.
	var st unix.Stat_t
	if err := unix.Stat(fuseDir, &st); err != nil {
		t.Fatal(err)
	}
	abort := fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", unix.Minor(st.Dev))
	if err := os.WriteFile(abort, []byte("1"), 0o200); err != nil {
		t.Skipf("abort the FUSE connection: %v (needs fusectl at /sys/fs/fuse/connections)", err)
	}
	if err := unix.Unmount(fuseDir, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if !backingDead(old.Device) {
		t.Fatalf("%s is not taken for dead after its FUSE server died and its mount was detached", old.Device)
	}
	serve()
	at, err := a.Mount(ctx, file, dir, 0)
	if err != nil {
		t.Fatalf("mount over a dead mount: %v", err)
	}
	newID, err := statID(file)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := loopBacking(at.Device); b != newID || at.Formatted {
		t.Fatalf("mount over a dead one: got %+v on file %v, want a device on the new file %v, not formatted", at, b, newID)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "v")); err != nil || string(b) != "1" {
		t.Fatalf("after the remount: got %q, %v, want 1", b, err)
	}
	// The dead device goes once the kernel lets go of the detached file
	// system, a moment after the lazy unmount.
	deadline := time.Now().Add(10 * time.Second)
	for old.Device != at.Device && isBound(old.Device) {
		if time.Now().After(deadline) {
			t.Fatalf("%s, on the dead file, is still bound", old.Device)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUnmountReportsLostWrites: umount(2) alone succeeds though writeback
// failed; Unmount syncs first and fails with ErrNotWritten, keeping the
// mount. The disk file lives on a tmpfs too small for what is written, so
// the loop device's writes to it fail (ENOSPC) while the disk still reads.
func TestUnmountReportsLostWrites(t *testing.T) {
	needRoot(t)
	ctx := testContext(t)
	var a Attacher
	small := t.TempDir()
	if err := unix.Mount("tmpfs", small, "tmpfs", 0, "size=12m"); err != nil {
		t.Skipf("mount a tmpfs: %v", err)
	}
	file := filepath.Join(small, "disk.img")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(file, 64<<20); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	at, err := a.Mount(ctx, file, dir, 0)
	t.Cleanup(func() {
		unix.Unmount(dir, unix.MNT_DETACH)
		if at.Device != "" {
			DetachDevice(context.Background(), at.Device)
		}
		unix.Unmount(small, unix.MNT_DETACH)
	})
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("weft"), 8<<20) // 32 MiB, more than the tmpfs holds
	if err := os.WriteFile(filepath.Join(dir, "big"), big, 0o644); err != nil {
		t.Fatalf("write (to the page cache): %v", err)
	}
	err = a.Unmount(ctx, file, dir)
	if !errors.Is(err, ErrNotWritten) {
		t.Fatalf("unmount with writes the disk refused: got %v, want ErrNotWritten", err)
	}
	if ok, _ := IsMountPoint(dir); !ok {
		t.Fatalf("%s was unmounted though its writes were lost", dir)
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
