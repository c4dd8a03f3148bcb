package csi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/node/blockfs"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// nodeService puts the node's disks where containers use them. Its
// state is the kernel's (loop devices, mounts), read back on every call,
// so it survives a restart of the plugin.
type nodeService struct {
	vols     Volumes
	nodeID   string
	disksDir string
	att      blockfs.Attacher
	log      *slog.Logger

	mountMu sync.Mutex // one request at a time to mount the disks' directory
}

func newNodeService(cfg Config, log *slog.Logger) *nodeService {
	return &nodeService{vols: cfg.Volumes, nodeID: cfg.NodeID, disksDir: cfg.DisksDir, log: log}
}

// NodeGetInfo names the node: the configured ID, else the daemon's.
func (p *Plugin) NodeGetInfo(ctx context.Context, _ *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	id := p.node.nodeID
	if id == "" {
		st, err := p.cfg.Volumes.Status(ctx)
		if err != nil {
			return nil, grpcError(err, "daemon status")
		}
		id = st.ID
	}
	return &csi.NodeGetInfoResponse{NodeId: id}, nil
}

// NodeGetCapabilities says the node stages volumes (a mount volume's file
// system is mounted once at the staging path, then bind-mounted at each
// target) and reports their usage.
func (p *Plugin) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	resp := &csi.NodeGetCapabilitiesResponse{}
	for _, t := range []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
		csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
	} {
		resp.Capabilities = append(resp.Capabilities, &csi.NodeServiceCapability{
			Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: t}},
		})
	}
	return resp, nil
}

// NodeStageVolume binds a loop device to the disk's file and, for a mount
// volume, mounts its file system (ext4, made if the disk is empty) at the
// staging path.
func (p *Plugin) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	id, staging, vc := req.GetVolumeId(), req.GetStagingTargetPath(), req.GetVolumeCapability()
	if err := requireVolumePath(id, staging, "staging target path"); err != nil {
		return nil, err
	}
	if err := requireCapability(vc); err != nil {
		return nil, err
	}
	unlock, err := p.lockOp("volume/" + id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	file, err := p.node.diskFile(ctx, id, !readOnlyMode(vc))
	if err != nil {
		return nil, err
	}
	if vc.GetBlock() != nil {
		if _, err := p.node.loop(ctx, file, false); err != nil {
			return nil, status.Errorf(codes.Internal, "stage %s: %v", id, err)
		}
		return &csi.NodeStageVolumeResponse{}, nil
	}
	flags, _ := mountFlags(vc.GetMount().GetMountFlags())
	if readOnlyMode(vc) {
		flags |= unix.MS_RDONLY
	}
	a, err := p.node.att.Mount(ctx, file, staging, flags)
	if err != nil {
		code := codes.Internal
		if errors.Is(err, blockfs.ErrUnknownData) {
			code = codes.FailedPrecondition // never formatted over
		}
		return nil, status.Errorf(code, "stage %s at %s: %v", id, staging, err)
	}
	p.log.Info("csi volume staged", "disk", id, "at", staging, "device", a.Device, "formatted", a.Formatted)
	return &csi.NodeStageVolumeResponse{}, nil
}

// NodeUnstageVolume unmounts the staging path and unbinds the disk's loop
// devices. A file system still in use fails with FailedPrecondition.
func (p *Plugin) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	id, staging := req.GetVolumeId(), req.GetStagingTargetPath()
	if err := requireVolumePath(id, staging, "staging target path"); err != nil {
		return nil, err
	}
	unlock, err := p.lockOp("volume/" + id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var file string
	if validVolumeID(id) {
		file = p.node.fileOf(id)
	}
	if err := p.node.att.Unmount(ctx, file, staging); err != nil {
		if errors.Is(err, blockfs.ErrBusy) {
			return nil, status.Errorf(codes.FailedPrecondition, "unstage %s: %v", id, err)
		}
		return nil, status.Errorf(codes.Internal, "unstage %s: %v", id, err)
	}
	return &csi.NodeUnstageVolumeResponse{}, nil
}

// NodePublishVolume makes the volume appear at the target path: for a
// block volume, the loop device bind-mounted on a file there (a read-only
// loop device when read-only: a read-only bind of a device node does not
// stop writes through it); for a mount volume, the staged file system
// bind-mounted on a directory there.
func (p *Plugin) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	id, target, staging, vc := req.GetVolumeId(), req.GetTargetPath(), req.GetStagingTargetPath(), req.GetVolumeCapability()
	if err := requireVolumePath(id, target, "target path"); err != nil {
		return nil, err
	}
	if err := requireCapability(vc); err != nil {
		return nil, err
	}
	if staging == "" {
		return nil, invalidf("staging target path missing: the plugin stages volumes")
	}
	unlock, err := p.lockOp("volume/" + id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	readOnly := req.GetReadonly() || readOnlyMode(vc)
	file, err := p.node.diskFile(ctx, id, !readOnly)
	if err != nil {
		return nil, err
	}
	if mounted, err := blockfs.IsMountPoint(target); err == nil && mounted {
		return &csi.NodePublishVolumeResponse{}, nil
	}
	flags, _ := mountFlags(vc.GetMount().GetMountFlags())
	var source string
	if vc.GetBlock() != nil {
		if source, err = p.node.loop(ctx, file, readOnly); err != nil {
			return nil, status.Errorf(codes.Internal, "publish %s: %v", id, err)
		}
		err = makeFile(target)
	} else {
		mounted, merr := blockfs.IsMountPoint(staging)
		if merr != nil || !mounted {
			return nil, status.Errorf(codes.FailedPrecondition, "publish %s: not staged at %s", id, staging)
		}
		source = staging
		err = os.MkdirAll(target, 0o750)
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "publish %s: %v", id, err)
	}
	if err := bindMount(source, target, readOnly, flags); err != nil {
		return nil, status.Errorf(codes.Internal, "publish %s at %s: %v", id, target, err)
	}
	p.log.Info("csi volume published", "disk", id, "at", target, "from", source, "read_only", readOnly)
	return &csi.NodePublishVolumeResponse{}, nil
}

// NodeUnpublishVolume unmounts the target path and removes what publish
// made there; a target that is gone is unpublished already.
func (p *Plugin) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetTargetPath()
	if err := requireVolumePath(id, target, "target path"); err != nil {
		return nil, err
	}
	unlock, err := p.lockOp("volume/" + id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	for {
		mounted, err := blockfs.IsMountPoint(target)
		if errors.Is(err, os.ErrNotExist) {
			return &csi.NodeUnpublishVolumeResponse{}, nil
		}
		if err != nil {
			return nil, status.Errorf(codes.Internal, "unpublish %s: %v", id, err)
		}
		if !mounted {
			break
		}
		if err := unix.Unmount(target, 0); err != nil {
			code := codes.Internal
			if errors.Is(err, unix.EBUSY) {
				code = codes.FailedPrecondition
			}
			return nil, status.Errorf(code, "unpublish %s: unmount %s: %v", id, target, err)
		}
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, status.Errorf(codes.Internal, "unpublish %s: %v", id, err)
	}
	p.log.Info("csi volume unpublished", "disk", id, "at", target)
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// requireVolumePath checks that a node request names a volume and a path
// (what says which path).
func requireVolumePath(id, path, what string) error {
	switch {
	case id == "":
		return invalidf("volume ID missing")
	case path == "":
		return invalidf("%s missing", what)
	}
	return nil
}

// requireCapability checks a node request's volume capability.
func requireCapability(vc *csi.VolumeCapability) error {
	if vc == nil {
		return invalidf("volume capability missing")
	}
	if err := checkCapability(vc); err != nil {
		return invalidf("%v", err)
	}
	return nil
}

// fileOf is the file of disk id in the disks' mount.
func (n *nodeService) fileOf(id string) string { return filepath.Join(n.disksDir, id+".img") }

// diskFile returns the file of disk id, mounting the node's disks first
// if they are not. A disk that does not exist is NotFound; one to write
// that another node of the mesh owns is FailedPrecondition (its file here
// is read-only: move the disk to this node first).
func (n *nodeService) diskFile(ctx context.Context, id string, write bool) (string, error) {
	if !validVolumeID(id) {
		return "", status.Errorf(codes.NotFound, "volume %q not found", id)
	}
	d, err := n.vols.DiskInfo(ctx, id)
	if err != nil {
		return "", grpcError(err, "volume %s", id)
	}
	st, err := n.vols.Status(ctx)
	if err != nil {
		return "", grpcError(err, "daemon status")
	}
	if write && d.Owner != "" && d.Owner != st.PeerID {
		return "", status.Errorf(codes.FailedPrecondition, "volume %s: node %s owns the disk, this node is %s (weft disk move %s %s, on the owner)", id, d.Owner, st.PeerID, id, st.PeerID)
	}
	if err := n.mountDisks(ctx, st); err != nil {
		return "", err
	}
	file := n.fileOf(id)
	if _, err := os.Stat(file); err != nil {
		return "", status.Errorf(codes.Unavailable, "volume %s: its file in the disks' mount: %v", id, err)
	}
	return file, nil
}

// mountDisks makes the daemon serve the node's disks at disksDir unless
// it does already (st lists the daemon's mounts). The mount stays when
// the plugin stops: loop devices of running containers are on its files.
func (n *nodeService) mountDisks(ctx context.Context, st api.Status) error {
	n.mountMu.Lock()
	defer n.mountMu.Unlock()
	dir, err := filepath.Abs(n.disksDir)
	if err != nil {
		return status.Errorf(codes.Internal, "disks' mount %s: %v", n.disksDir, err)
	}
	if slices.ContainsFunc(st.Mounts, func(m api.MountInfo) bool { return sameDir(m.Dir, dir) }) {
		return nil
	}
	// Made only when missing: a mount left by a daemon that was killed
	// answers ENOTCONN, and the daemon's Mount detaches it.
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return status.Errorf(codes.Internal, "disks' mount: %v", err)
		}
	}
	if _, err := n.vols.Mount(ctx, dir); err != nil {
		return grpcError(err, "mount the node's disks at %s", dir)
	}
	n.log.Info("csi: node's disks mounted", "dir", dir)
	return nil
}

// sameDir reports whether a and b name the same directory, symlinks
// resolved (the daemon keeps mounts by their resolved path).
func sameDir(a, b string) bool {
	if a == b {
		return true
	}
	ra, err1 := filepath.EvalSymlinks(filepath.Dir(a))
	rb, err2 := filepath.EvalSymlinks(filepath.Dir(b))
	return err1 == nil && err2 == nil && filepath.Join(ra, filepath.Base(a)) == filepath.Join(rb, filepath.Base(b))
}

// loop returns a loop device bound to file, read-only or not as asked,
// binding one if none is.
func (n *nodeService) loop(ctx context.Context, file string, readOnly bool) (string, error) {
	devs, err := n.att.Loops.Find(file)
	if err != nil {
		return "", err
	}
	for _, d := range devs {
		if loopReadOnly(d) == readOnly {
			return d, nil
		}
	}
	// Not Loops.Attach: it would answer a bound device whatever its mode.
	return attachLoop(ctx, file, readOnly)
}

// makeFile makes an empty file at path (and its parent) if nothing is
// there: the mount point of a block volume.
func makeFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// bindMount binds source at target, then remounts the bind read-only
// and with flags when asked (a bind takes them only on a remount).
func bindMount(source, target string, readOnly bool, flags uintptr) error {
	if err := unix.Mount(source, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", source, err)
	}
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if flags == 0 {
		return nil
	}
	if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|flags, ""); err != nil {
		return errors.Join(fmt.Errorf("remount %s with flags %#x: %w", target, flags, err), unix.Unmount(target, 0))
	}
	return nil
}
