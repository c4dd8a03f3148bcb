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
	stateDir string // the records of staged volumes (staged.go)
	att      blockfs.Attacher
	log      *slog.Logger

	mountMu sync.Mutex // one request at a time to mount the disks' directory
}

func newNodeService(cfg Config, log *slog.Logger) *nodeService {
	return &nodeService{vols: cfg.Volumes, nodeID: cfg.NodeID, disksDir: cfg.DisksDir, stateDir: cfg.stateDir(), log: log}
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
// staging path. A read-only volume never writes the disk: a read-only
// loop device, no file system made (an empty disk is FailedPrecondition),
// no journal replayed. Each loop device bound is recorded (staged.go) for
// unstage to free; staging again with another capability is
// AlreadyExists.
func (p *Plugin) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	id, vc := req.GetVolumeId(), req.GetVolumeCapability()
	readOnly := readOnlyMode(vc)
	staging, file, unlock, err := p.lockVolumeFile(ctx, id, req.GetStagingTargetPath(), "staging target path", vc, readOnly)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rec, ok, err := p.node.loadRecord(id, staging)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "stage %s: %v", id, err)
	}
	block := vc.GetBlock() != nil
	if ok && (rec.Block != block || rec.ReadOnly != readOnly) {
		return nil, status.Errorf(codes.AlreadyExists, "volume %s is staged at %s already, block %v read-only %v", id, staging, rec.Block, rec.ReadOnly)
	}
	rec = stageRecord{VolumeID: id, Staging: staging, Block: block, ReadOnly: readOnly, Loops: rec.Loops}
	if err := p.node.saveRecord(rec); err != nil {
		return nil, status.Errorf(codes.Internal, "stage %s: %v", id, err)
	}
	if block {
		if _, err := p.node.loop(ctx, &rec, file, readOnly); err != nil {
			return nil, err
		}
		return &csi.NodeStageVolumeResponse{}, nil
	}
	flags, _ := mountFlags(vc.GetMount().GetMountFlags())
	var a blockfs.Attachment
	if readOnly {
		a, err = p.node.att.MountReadOnly(ctx, file, staging, flags)
	} else {
		a, err = p.node.att.Mount(ctx, file, staging, flags)
	}
	if err != nil {
		code := codes.Internal
		if errors.Is(err, blockfs.ErrUnknownData) || errors.Is(err, blockfs.ErrNoFileSystem) {
			code = codes.FailedPrecondition // never formatted over, nor read-only
		}
		return nil, status.Errorf(code, "stage %s at %s: %v", id, staging, err)
	}
	if err := p.node.recordLoop(&rec, a.Device, file); err != nil {
		return nil, status.Errorf(codes.Internal, "stage %s: %v", id, err)
	}
	p.log.Info("csi volume staged", "disk", id, "at", staging, "device", a.Device, "formatted", a.Formatted, "read_only", readOnly)
	return &csi.NodeStageVolumeResponse{}, nil
}

// NodeUnstageVolume unmounts the staging path and unbinds the disk's loop
// devices: those on its file now, and those recorded at stage and publish
// (on the file it had then, or on a dead one). Each writable device is
// flushed before it is unbound (and a file system synced before it is
// unmounted), so what was written through it is durable on the disk when
// the call returns; a flush that fails keeps the device bound and the
// call fails, for a retry. A file system still in use fails with
// FailedPrecondition.
func (p *Plugin) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	id := req.GetVolumeId()
	staging, unlock, err := p.lockVolumePath(id, req.GetStagingTargetPath(), "staging target path")
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
	if err := p.node.freeRecorded(ctx, id, staging); err != nil {
		return nil, status.Errorf(codes.Internal, "unstage %s: %v", id, err)
	}
	return &csi.NodeUnstageVolumeResponse{}, nil
}

// NodePublishVolume makes the volume appear at the target path: for a
// block volume, the loop device bind-mounted on a file there (a read-only
// loop device when read-only: a read-only bind of a device node does not
// stop writes through it); for a mount volume, the staged file system
// bind-mounted on a directory there. A target published already with
// another access type or read-only mode is AlreadyExists.
func (p *Plugin) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	id, vc := req.GetVolumeId(), req.GetVolumeCapability()
	if req.GetStagingTargetPath() == "" {
		return nil, invalidf("staging target path missing: the plugin stages volumes")
	}
	staging := resolvePath(req.GetStagingTargetPath())
	readOnly := req.GetReadonly() || readOnlyMode(vc)
	target, file, unlock, err := p.lockVolumeFile(ctx, id, req.GetTargetPath(), "target path", vc, readOnly)
	if err != nil {
		return nil, err
	}
	defer unlock()
	block := vc.GetBlock() != nil
	if mounted, err := blockfs.IsMountPoint(target); err == nil && mounted {
		if err := samePublication(id, target, block, readOnly); err != nil {
			return nil, err
		}
		return &csi.NodePublishVolumeResponse{}, nil
	}
	flags, _ := mountFlags(vc.GetMount().GetMountFlags())
	var source string
	if block {
		rec, ok, err := p.node.loadRecord(id, staging)
		if err != nil || !ok {
			return nil, status.Errorf(codes.FailedPrecondition, "publish %s: not staged at %s (%v)", id, staging, err)
		}
		if source, err = p.node.loop(ctx, &rec, file, readOnly); err != nil {
			return nil, err
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

// samePublication checks that what is mounted at target is volume id
// published the way asked (a block device or a directory, read-only or
// not), else AlreadyExists.
func samePublication(id, target string, block, readOnly bool) error {
	var st unix.Stat_t
	var fs unix.Statfs_t
	if err := unix.Stat(target, &st); err != nil {
		return status.Errorf(codes.Internal, "publish %s: %v", id, err)
	}
	if err := unix.Statfs(target, &fs); err != nil {
		return status.Errorf(codes.Internal, "publish %s: %v", id, err)
	}
	isBlock := st.Mode&unix.S_IFMT == unix.S_IFBLK
	isRO := fs.Flags&unix.ST_RDONLY != 0
	if isBlock != block || isRO != readOnly {
		return status.Errorf(codes.AlreadyExists, "volume %s is published at %s already, block %v read-only %v", id, target, isBlock, isRO)
	}
	return nil
}

// NodeUnpublishVolume unmounts the target path and removes what publish
// made there, flushing a block volume's device first (flushBlockTarget);
// a target that is gone is unpublished already.
func (p *Plugin) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	id := req.GetVolumeId()
	target, unlock, err := p.lockVolumePath(id, req.GetTargetPath(), "target path")
	if err != nil {
		return nil, err
	}
	defer unlock()
	for {
		mounted, err := blockfs.IsMountPoint(target)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "unpublish %s: %v", id, err)
		}
		if !mounted {
			break
		}
		if err := p.node.flushBlockTarget(target); err != nil {
			return nil, status.Errorf(codes.Internal, "unpublish %s: %v", id, err)
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

// flushBlockTarget flushes the loop device of a block volume published at
// target (blockfs.FlushDevice), so that what the pod wrote through it is
// durable on the disk once unpublished, like after an NBD FLUSH, not only
// once unstaged. A failure keeps the target published for a retry; a
// device whose file is dead (the daemon was killed) has nothing more to
// flush, and is logged. A mount volume's target is a bind of the staging
// path: its file system is synced when unstaged.
func (n *nodeService) flushBlockTarget(target string) error {
	var st unix.Stat_t
	if err := unix.Stat(target, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return nil // gone meanwhile, or not a block volume
	}
	dev, ok, err := n.att.LoopDeviceAt(target)
	if err != nil || !ok {
		return err
	}
	err = blockfs.FlushDevice(dev)
	if errors.Is(err, blockfs.ErrFileGone) {
		n.log.Warn("csi unpublish: the block volume's file is gone, unsynced writes are lost", "at", target, "device", dev, "err", err)
		return nil
	}
	return err
}

// resolvePath is path with its symlinks resolved (the kernel's mount
// table has resolved paths), as far as it exists: a path not made yet is
// its resolved parent joined with its name.
func resolvePath(path string) string {
	path = filepath.Clean(path)
	if r, err := filepath.EvalSymlinks(path); err == nil {
		return r
	}
	if r, err := filepath.EvalSymlinks(filepath.Dir(path)); err == nil {
		return filepath.Join(r, filepath.Base(path))
	}
	return path
}

// lockVolumePath begins a node request on volume id at path (what says
// which path): both must be given (else InvalidArgument); it takes the
// volume's operation lock (Aborted while another holds it), which the
// caller releases with unlock, and returns path resolved.
func (p *Plugin) lockVolumePath(id, path, what string) (resolved string, unlock func(), err error) {
	if err := requireVolumePath(id, path, what); err != nil {
		return "", nil, err
	}
	unlock, err = p.lockOp("volume/" + id)
	if err != nil {
		return "", nil, err
	}
	return resolvePath(path), unlock, nil
}

// lockVolumeFile begins a node request that puts volume id at path with
// capability vc, as lockVolumePath does, and returns the disk's file
// (diskFile: for writing unless readOnly) with the lock held; on an error
// the lock is released.
func (p *Plugin) lockVolumeFile(ctx context.Context, id, path, what string, vc *csi.VolumeCapability, readOnly bool) (resolved, file string, unlock func(), err error) {
	if err := requireCapability(vc); err != nil {
		return "", "", nil, err
	}
	resolved, unlock, err = p.lockVolumePath(id, path, what)
	if err != nil {
		return "", "", nil, err
	}
	file, err = p.node.diskFile(ctx, id, !readOnly)
	if err != nil {
		unlock()
		return "", "", nil, err
	}
	return resolved, file, unlock, nil
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
// binding one if none is, and records it in rec for unstage to free. A
// writable device on a file that only reads (a disk another node owns)
// is FailedPrecondition, no device left bound.
func (n *nodeService) loop(ctx context.Context, rec *stageRecord, file string, readOnly bool) (string, error) {
	dev, err := n.att.Loops.AttachMode(ctx, file, readOnly)
	if errors.Is(err, blockfs.ErrReadOnlyFile) {
		return "", status.Errorf(codes.FailedPrecondition, "volume %s: %v", rec.VolumeID, err)
	}
	if err == nil {
		err = n.recordLoop(rec, dev, file)
	}
	if err != nil {
		return "", status.Errorf(codes.Internal, "volume %s: %v", rec.VolumeID, err)
	}
	return dev, nil
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
