package fusefs

import (
	"context"
	"syscall"

	"github.com/weft-mesh/weft/volume"
)

// RemoteDisks is what the file system needs to show the disks another node
// owns; the node implements it from the mesh's catalog. Its methods must
// be safe for concurrent use.
type RemoteDisks interface {
	// RemoteDisks describes the disks another node owns: name, size,
	// block size, root and when it was committed.
	RemoteDisks(ctx context.Context) []volume.DiskInfo
	// RemoteDisk describes one of them (the kernel looks names up on every
	// open and stat), or reports false.
	RemoteDisk(ctx context.Context, name string) (volume.DiskInfo, bool)
	// OpenRemoteDisk opens a read-only view of such a disk at its current
	// root; blocks this node lacks are fetched from their holders on read.
	OpenRemoteDisk(ctx context.Context, name string) (*volume.View, error)
}

// findRemoteDisk returns the current description of a disk another node
// owns, or ENOENT.
func findRemoteDisk(ctx context.Context, f *filesys, name string) (image, syscall.Errno) {
	if f.cfg.Remote == nil {
		return image{}, syscall.ENOENT
	}
	d, ok := f.cfg.Remote.RemoteDisk(ctx, name)
	if !ok {
		return image{}, syscall.ENOENT
	}
	return remoteDiskImageOf(d), 0
}

// remoteDiskImageOf is a disk another node owns as an image at its
// current root. Its blocks are not counted as used: this node may hold
// none of them.
func remoteDiskImageOf(d volume.DiskInfo) image {
	return image{
		kind: remoteDiskImage, ref: volume.Ref{Disk: d.Name}, root: d.Root,
		size: d.Size, blockSize: d.BlockSize, created: d.Committed,
	}
}
