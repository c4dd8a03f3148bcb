package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// csiClient drives `weft csi` the way a kubelet and a provisioner would.
type csiClient struct {
	t    *testing.T
	ctx  context.Context
	ctl  csi.ControllerClient
	node csi.NodeClient
}

// csiRootClient skips the test unless it runs as root (loop devices,
// mounts; CI runs it as root), else starts a daemon and `weft csi`
// (csiRootNode) and connects to the plugin.
func csiRootClient(t *testing.T) (h *harness, c *csiClient, sock string, stopCSI func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (loop devices, mounts); CI runs it as root")
	}
	h, sock, stopCSI = csiRootNode(t)
	return h, dialCSI(t, sock), sock, stopCSI
}

// dialCSI connects to the plugin at sock; its calls have 3 minutes, and
// the connection closes when the test ends.
func dialCSI(t *testing.T, sock string) *csiClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return &csiClient{t: t, ctx: ctx, ctl: csi.NewControllerClient(conn), node: csi.NewNodeClient(conn)}
}

func csiCap(block, readOnly bool) *csi.VolumeCapability {
	mode := csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER
	if readOnly {
		mode = csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY
	}
	c := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode}}
	if block {
		c.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
	} else {
		c.AccessType = &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}}
	}
	return c
}

func (c *csiClient) create(name string, vc *csi.VolumeCapability, src *csi.VolumeContentSource) *csi.Volume {
	c.t.Helper()
	resp, err := c.ctl.CreateVolume(c.ctx, &csi.CreateVolumeRequest{
		Name: name, VolumeCapabilities: []*csi.VolumeCapability{vc}, VolumeContentSource: src,
		CapacityRange: &csi.CapacityRange{RequiredBytes: csiVolumeSize},
	})
	if err != nil {
		c.t.Fatalf("CreateVolume %s: %v", name, err)
	}
	return resp.GetVolume()
}

// use stages and publishes a volume, and registers their undoing (the
// calls are idempotent) in case the test stops before it does.
func (c *csiClient) use(id string, vc *csi.VolumeCapability, readOnly bool) (target string, done func()) {
	c.t.Helper()
	base := c.t.TempDir()
	staging, target := filepath.Join(base, "staging"), filepath.Join(base, "target")
	if err := os.Mkdir(staging, 0o750); err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.node.NodeStageVolume(c.ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: vc}); err != nil {
		c.t.Fatalf("NodeStageVolume %s: %v", id, err)
	}
	if _, err := c.node.NodePublishVolume(c.ctx, &csi.NodePublishVolumeRequest{
		VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: vc, Readonly: readOnly,
	}); err != nil {
		c.t.Fatalf("NodePublishVolume %s: %v", id, err)
	}
	undo := func(ctx context.Context) error {
		_, err := c.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
		if err == nil {
			_, err = c.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging})
		}
		return err
	}
	undone := false
	c.t.Cleanup(func() {
		if undone {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		defer cancel()
		if err := undo(ctx); err != nil {
			// The plugin may be dead: take the mounts down here (the loop
			// devices go at the node's cleanup, csiRootNode).
			trySys("umount", "-l", target)
			trySys("umount", "-l", staging)
			c.t.Errorf("cleanup: unpublish and unstage %s: %v", id, err)
		}
	})
	return target, func() {
		c.t.Helper()
		if err := undo(c.ctx); err != nil {
			c.t.Fatalf("unpublish and unstage %s: %v", id, err)
		}
		undone = true
		if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
			c.t.Fatalf("target %s after NodeUnpublishVolume: %v, want it gone", target, err)
		}
	}
}

// TestCSIVolumeData checks that what csi-sanity cannot see works: data
// written through a published mount or block volume is on the disk,
// snapshots and clones carry it, read-only publishing refuses writes, a
// volume in use is not deleted, a published volume outlives a restart of
// the plugin, and volumes stage again after the daemon was killed.
func TestCSIVolumeData(t *testing.T) {
	h, c, sock, stopCSI := csiRootClient(t)
	disks := filepath.Join(h.home, "csi", "disks")
	ctx := c.ctx

	// A mount volume: ext4 made on first use, a file written in it.
	start := time.Now()
	c.create("data", csiCap(false, false), nil)
	t.Logf("figure: CreateVolume (64 MiB): %v", time.Since(start).Round(time.Microsecond))
	start = time.Now()
	dir, done := c.use("data", csiCap(false, false), false)
	t.Logf("figure: first NodeStageVolume + NodePublishVolume of a mount volume (mkfs.ext4 on 64 MiB): %v", time.Since(start).Round(time.Millisecond))
	want := []byte("written through a CSI mount volume\n")
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "data"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("DeleteVolume of a published volume: %v, want FailedPrecondition", err)
	}
	done()
	if out := sys(t, "losetup", "-j", filepath.Join(disks, "data.img")); out != "" {
		t.Fatalf("loop devices left on data.img after unstage: %s", out)
	}

	// Its snapshot, cloned, holds the file; read-only refuses writes.
	start = time.Now()
	snap, err := c.ctl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "data-snap", SourceVolumeId: "data"})
	if err != nil {
		t.Fatalf("CreateSnapshot: %v", err)
	}
	t.Logf("figure: CreateSnapshot: %v", time.Since(start).Round(time.Microsecond))
	start = time.Now()
	c.create("data-copy", csiCap(false, true), &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.GetSnapshot().GetSnapshotId()},
	}})
	t.Logf("figure: CreateVolume from the snapshot (clone): %v", time.Since(start).Round(time.Microsecond))
	start = time.Now()
	dir, done = c.use("data-copy", csiCap(false, true), true)
	t.Logf("figure: NodeStageVolume + NodePublishVolume of a formatted volume, read-only: %v", time.Since(start).Round(time.Millisecond))
	if got, err := os.ReadFile(filepath.Join(dir, "hello.txt")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("hello.txt in the clone of the snapshot: %q, %v; want %q", got, err, want)
	}
	if err := os.WriteFile(filepath.Join(dir, "new.txt"), want, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("write to a read-only mount volume: %v, want EROFS", err)
	}
	done()

	// A block volume: bytes written through the published device are on
	// the disk, and in a clone of the volume.
	c.create("raw", csiCap(true, false), nil)
	dev, done := c.use("raw", csiCap(true, false), false)
	data := make([]byte, 1<<20)
	rand.Read(data)
	const off = 3<<20 + 4096
	writeAt(t, dev, data, off)
	// The plugin restarts under a published volume: the volume stays, and
	// the new plugin unpublishes and unstages it.
	stopCSI()
	if got := readAt(t, dev, len(data), off); !bytes.Equal(got, data) {
		t.Fatal("the block volume does not read what was written, once its plugin stopped")
	}
	startCSI(t, h.bin, h.home, filepath.Dir(sock), nil)
	done()
	c.create("raw-copy", csiCap(true, true), &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
		Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: "raw"},
	}})
	if got := readAt(t, filepath.Join(disks, "raw-copy.img"), len(data), off); !bytes.Equal(got, data) {
		t.Fatal("raw-copy.img does not hold what was written through raw's block device")
	}
	dev, done = c.use("raw-copy", csiCap(true, true), true)
	if got := readAt(t, dev, len(data), off); !bytes.Equal(got, data) {
		t.Fatal("the read-only block device of raw-copy does not read what was written to raw")
	}
	// A read-only loop device opens for writing; the write fails.
	if f, err := os.OpenFile(dev, os.O_WRONLY, 0); err == nil {
		_, err = f.WriteAt(data[:4096], 0)
		f.Close()
		if !errors.Is(err, syscall.EPERM) {
			t.Fatalf("write to a read-only block volume: %v, want EPERM", err)
		}
	}
	done()

	// The daemon is killed: its FUSE mount of the disks is left dead; the
	// next stage has the new daemon mount them again.
	h.killDaemon()
	h.startDaemon()
	dev, done = c.use("raw-copy", csiCap(true, true), true)
	if got := readAt(t, dev, len(data), off); !bytes.Equal(got, data) {
		t.Fatal("raw-copy after the daemon was killed does not read what was written to raw")
	}
	done()

	for _, v := range []string{"data", "data-copy", "raw", "raw-copy"} {
		if _, err := c.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v}); err != nil {
			t.Fatalf("DeleteVolume %s: %v", v, err)
		}
	}
	// The snapshot outlives its volume.
	list, err := c.ctl.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SnapshotId: snap.GetSnapshot().GetSnapshotId()})
	if err != nil || len(list.GetEntries()) != 1 {
		t.Fatalf("ListSnapshots of the snapshot of a deleted volume: %v, %v; want it", list, err)
	}
	if out := h.ok("disk", "ls"); strings.Contains(out, "raw") {
		t.Fatalf("disk ls after DeleteVolume lists raw:\n%s", out)
	}
}

func writeAt(t *testing.T, path string, p []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(p, off); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", path, err)
	}
}

func readAt(t *testing.T, path string, n int, off int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := make([]byte, n)
	if _, err := f.ReadAt(p, off); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return p
}
