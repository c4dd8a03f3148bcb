package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/node/blockfs"
)

// loopsUnder lists the loop devices bound to a file whose path starts
// with dir (the kernel keeps the path a device was bound with, even once
// the file is gone).
func loopsUnder(dir string) []string {
	names, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), dir+"/") {
			out = append(out, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(n))))
		}
	}
	return out
}

// TestCSINodeWritesNothingReadOnlyAndLeaksNoLoop: a read-only stage never
// writes the disk (an empty disk is refused, not formatted; the clone of
// a snapshot taken while mounted, its journal needing recovery, keeps its
// bytes), and a block volume's loop devices are freed at unstage even
// after the daemon was killed under it (its file is another by then).
func TestCSINodeWritesNothingReadOnlyAndLeaksNoLoop(t *testing.T) {
	h, c, _, _ := csiRootClient(t)
	ctx := c.ctx
	cl := api.NewClient(h.home)
	t.Cleanup(func() { cl.Close() })
	diskState := func(name string) api.DiskInfo {
		t.Helper()
		h.ok("disk", "commit", name)
		d, err := cl.DiskInfo(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	// An empty disk staged read-only: refused, nothing written.
	c.create("empty", csiCap(false, true), nil)
	staging := filepath.Join(t.TempDir(), "staging")
	_, err := c.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "empty", StagingTargetPath: staging, VolumeCapability: csiCap(false, true)})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("NodeStageVolume of an empty disk, read-only: %v, want FailedPrecondition", err)
	}
	if d := diskState("empty"); d.Root != "" || d.UsedBytes != 0 {
		t.Fatalf("the empty disk after a refused read-only stage: root %q, %d bytes used; want none", d.Root, d.UsedBytes)
	}

	// A snapshot taken while the volume is mounted (ext4's journal needs
	// recovery), cloned and staged read-only: the clone keeps its bytes.
	c.create("live", csiCap(false, false), nil)
	dir, done := c.use("live", csiCap(false, false), false)
	want := []byte("written before the snapshot\n")
	if err := os.WriteFile(filepath.Join(dir, "f.txt"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	sys(t, "sync", "-f", filepath.Join(dir, "f.txt"))
	snap, err := c.ctl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "live-snap", SourceVolumeId: "live"})
	if err != nil {
		t.Fatalf("CreateSnapshot: %v", err)
	}
	done()
	c.create("copy", csiCap(false, true), &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.GetSnapshot().GetSnapshotId()},
	}})
	before := diskState("copy")
	for _, block := range []bool{false, true} {
		target, done := c.use("copy", csiCap(block, true), true)
		if !block {
			if got, err := os.ReadFile(filepath.Join(target, "f.txt")); err != nil || string(got) != string(want) {
				t.Fatalf("f.txt in the read-only clone: %q, %v; want %q", got, err, want)
			}
		}
		done()
		if after := diskState("copy"); after.Root != before.Root || after.UsedBytes != before.UsedBytes {
			t.Fatalf("the clone after a read-only stage (block %v): root %s, %d bytes used; before: %s, %d", block, after.Root, after.UsedBytes, before.Root, before.UsedBytes)
		}
	}

	// Symlinked paths (as kubelet's may be): publish twice and unpublish
	// work through them; another capability on the same paths is
	// AlreadyExists; stats answer only at the volume's own mount.
	c.create("sym", csiCap(false, false), nil)
	real := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	symStaging, symTarget := filepath.Join(link, "staging"), filepath.Join(link, "target")
	if err := os.Mkdir(symStaging, 0o750); err != nil {
		t.Fatal(err)
	}
	vc := csiCap(false, false)
	if _, err := c.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "sym", StagingTargetPath: symStaging, VolumeCapability: vc}); err != nil {
		t.Fatalf("NodeStageVolume through a symlink: %v", err)
	}
	t.Cleanup(func() {
		trySys("umount", "-l", filepath.Join(real, "target"))
		c.node.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: "sym", StagingTargetPath: symStaging})
	})
	_, err = c.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "sym", StagingTargetPath: symStaging, VolumeCapability: csiCap(false, true)})
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("NodeStageVolume again, read-only: %v, want AlreadyExists", err)
	}
	for range 2 {
		if _, err := c.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: "sym", StagingTargetPath: symStaging, TargetPath: symTarget, VolumeCapability: vc}); err != nil {
			t.Fatalf("NodePublishVolume through a symlink: %v", err)
		}
	}
	if out := sys(t, "findmnt", "-n", "-o", "TARGET", filepath.Join(real, "target")); strings.Count(out, "\n") > 0 {
		t.Fatalf("published twice through a symlink, mounted more than once:\n%s", out)
	}
	_, err = c.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: "sym", StagingTargetPath: symStaging, TargetPath: symTarget, VolumeCapability: vc, Readonly: true})
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("NodePublishVolume again, read-only: %v, want AlreadyExists", err)
	}
	if _, err := c.node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "sym", VolumePath: symTarget}); err != nil {
		t.Fatalf("NodeGetVolumeStats at its target: %v", err)
	}
	_, err = c.node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "sym", VolumePath: t.TempDir()})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("NodeGetVolumeStats at a directory that is not its mount: %v, want NotFound", err)
	}
	if _, err := c.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "sym", TargetPath: symTarget}); err != nil {
		t.Fatalf("NodeUnpublishVolume through a symlink: %v", err)
	}
	if ok, _ := blockfs.IsMountPoint(filepath.Join(real, "target")); ok {
		t.Fatal("the target is still mounted after NodeUnpublishVolume through a symlink")
	}
	if _, err := c.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "sym", StagingTargetPath: symStaging}); err != nil {
		t.Fatalf("NodeUnstageVolume through a symlink: %v", err)
	}
	if ok, _ := blockfs.IsMountPoint(filepath.Join(real, "staging")); ok {
		t.Fatal("the staging path is still mounted after NodeUnstageVolume through a symlink")
	}

	// A block volume published, the daemon killed and started again:
	// unpublish and unstage free its loop device, now on a dead file.
	c.create("blk", csiCap(true, false), nil)
	_, done = c.use("blk", csiCap(true, false), false)
	if got := loopsUnder(h.home); len(got) != 1 {
		t.Fatalf("loop devices on the disks' files with blk published: %v, want one", got)
	}
	h.killDaemon()
	h.startDaemon()
	done()
	if got := loopsUnder(h.home); len(got) != 0 {
		t.Fatalf("loop devices left on the disks' files after unstage: %v", got)
	}
}
