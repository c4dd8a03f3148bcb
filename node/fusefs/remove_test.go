package fusefs

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/weft-mesh/weft/volume"
)

// TestRemoveRefused checks that rm and rmdir in the mount fail with an
// errno instead of reporting a removal that did not happen: EPERM for a
// disk this node owns (weft disk rm removes it), EROFS for replicas,
// spacesuit versions, a disk another node owns and the fixed directories.
// Everything is still there afterwards.
func TestRemoveRefused(t *testing.T) {
	var remote *fakeRemote
	vols, m := testMountWith(t, func(cfg *Config, vols *volume.Manager) {
		remote = &fakeRemote{vols: vols, name: "far"}
		cfg.Remote = remote
	})
	ctx := context.Background()
	createDisk(t, vols, "a", 64<<10)
	info, err := vols.Commit(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	remote.publish(info)
	if _, err := vols.CreateReplica(ctx, "a", "r1"); err != nil {
		t.Fatal(err)
	}
	if _, err := vols.PublishSpacesuit(ctx, "base", volume.Ref{Disk: "a"}, 0); err != nil {
		t.Fatal(err)
	}
	dir := m.Dir()
	for _, c := range []struct {
		path string
		rm   func(string) error
		want syscall.Errno
	}{
		{"a.img", syscall.Unlink, syscall.EPERM},
		{"far.img", syscall.Unlink, syscall.EROFS},
		{"replicas/a/r1.img", syscall.Unlink, syscall.EROFS},
		{"spacesuits/base@1.img", syscall.Unlink, syscall.EROFS},
		{"replicas/a", syscall.Rmdir, syscall.EROFS},
		{"replicas", syscall.Rmdir, syscall.EROFS},
		{"spacesuits", syscall.Rmdir, syscall.EROFS},
	} {
		p := filepath.Join(dir, c.path)
		wantErrno(t, "remove "+c.path, c.rm(p), c.want)
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s after the refused removal: %v", c.path, err)
		}
	}
	if _, err := vols.Head("a"); err != nil {
		t.Fatalf("disk a after rm a.img: %v", err)
	}
}

// TestDiskHandles checks that the mount counts the open handles of a disk
// file, which is what makes weft disk rm refuse a disk in use, and that a
// removed disk's open file reads EIO rather than its cached pages once
// DropRemovedDisk has run.
func TestDiskHandles(t *testing.T) {
	vols, m := testMount(t)
	ctx := context.Background()
	createDisk(t, vols, "a", 64<<10)
	createDisk(t, vols, "b", 64<<10)
	p := filepath.Join(m.Dir(), "a.img")
	data := bytes.Repeat([]byte{0x5a}, 64<<10)
	writeFile(t, p, data)
	// The kernel releases writeFile's handle after its close returned.
	waitHandles(t, m, "a", 0)
	f1, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f1.Close()
	f2, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Closed before the mount's cleanup unmounts it, also when the test
	// fails: a test process that exits with a file open on its own mount
	// hangs in the kernel's flush to a server that is gone.
	defer f2.Close()
	if got := m.DiskHandles("a"); got != 2 {
		t.Fatalf("DiskHandles(a) with two open files: got %d, want 2", got)
	}
	if got := m.DiskHandles("b"); got != 0 {
		t.Fatalf("DiskHandles(b): got %d, want 0", got)
	}
	f2.Close()
	// The kernel sends the release after close returns.
	waitHandles(t, m, "a", 1)

	got := make([]byte, len(data))
	if _, err := f1.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read a.img: %v, equal %v", err, bytes.Equal(got, data))
	}
	if err := vols.RemoveDisk(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if got := m.DiskHandles("a"); got != 0 {
		t.Fatalf("DiskHandles(a) after removal: got %d, want 0 (the head is gone)", got)
	}
	m.DropRemovedDisk("a")
	_, err = f1.ReadAt(got, 0)
	wantErrno(t, "read a removed disk's open file after DropRemovedDisk", err, syscall.EIO)
}

// waitHandles waits, up to 5 s, for disk's file to have want open handles.
func waitHandles(t *testing.T, m *Mount, disk string, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for m.DiskHandles(disk) != want {
		if time.Now().After(deadline) {
			t.Fatalf("DiskHandles(%s): got %d after 5s, want %d", disk, m.DiskHandles(disk), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
