package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// TestCSIUnstageAndUnpublishFlush: bytes written through a block
// volume's loop device by a process that never fsynced are durable on the
// disk once NodeUnstageVolume returns (the device is flushed before it is
// unbound), and once NodeUnpublishVolume returns for a published one: the
// daemon is killed right after, and a fresh read-only stage reads them.
// Without the flush they would be in the daemon's overlay only, not yet
// made durable, and lost with it.
func TestCSIUnstageAndUnpublishFlush(t *testing.T) {
	h, c, _, _ := csiRootClient(t)
	ctx := c.ctx
	const off = 5<<20 + 4096

	// readBack stages id read-only after the daemon was killed and
	// started again, and checks it reads want at off.
	readBack := func(id string, want []byte) {
		t.Helper()
		h.killDaemon()
		h.startDaemon()
		dev, done := c.use(id, csiCap(true, true), true)
		if got := readAt(t, dev, len(want), off); !bytes.Equal(got, want) {
			t.Fatalf("%s after the daemon was killed does not read what was written through its device before the call returned", id)
		}
		done()
	}

	// Staged only: written through the staged loop device itself.
	c.create("unstaged", csiCap(true, false), nil)
	staging := filepath.Join(t.TempDir(), "staging")
	if _, err := c.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "unstaged", StagingTargetPath: staging, VolumeCapability: csiCap(true, false)}); err != nil {
		t.Fatalf("NodeStageVolume: %v", err)
	}
	loops := loopsUnder(h.home)
	if len(loops) != 1 {
		t.Fatalf("loop devices with one volume staged: %v, want one", loops)
	}
	data := make([]byte, 1<<20)
	rand.Read(data)
	writeNoSync(t, loops[0], data, off)
	if _, err := c.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "unstaged", StagingTargetPath: staging}); err != nil {
		t.Fatalf("NodeUnstageVolume: %v", err)
	}
	readBack("unstaged", data)

	// Published: written through the target; unpublish alone flushes,
	// and unstage after the daemon was killed still frees the device.
	c.create("unpublished", csiCap(true, false), nil)
	base := t.TempDir()
	staging, target := filepath.Join(base, "staging"), filepath.Join(base, "target")
	vc := csiCap(true, false)
	if _, err := c.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "unpublished", StagingTargetPath: staging, VolumeCapability: vc}); err != nil {
		t.Fatalf("NodeStageVolume: %v", err)
	}
	if _, err := c.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: "unpublished", StagingTargetPath: staging, TargetPath: target, VolumeCapability: vc}); err != nil {
		t.Fatalf("NodePublishVolume: %v", err)
	}
	rand.Read(data)
	writeNoSync(t, target, data, off)
	if _, err := c.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "unpublished", TargetPath: target}); err != nil {
		t.Fatalf("NodeUnpublishVolume: %v", err)
	}
	h.killDaemon()
	h.startDaemon()
	if _, err := c.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "unpublished", StagingTargetPath: staging}); err != nil {
		t.Fatalf("NodeUnstageVolume after the daemon was killed: %v", err)
	}
	if got := loopsUnder(h.home); len(got) != 0 {
		t.Fatalf("loop devices left after unstage: %v", got)
	}
	readBack("unpublished", data)
}

// writeNoSync writes p at off in path and closes it without an fsync, as
// a pod that exits without syncing does.
func writeNoSync(t *testing.T, path string, p []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(p, off); err != nil {
		f.Close()
		t.Fatalf("write %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close %s: %v", path, err)
	}
}
