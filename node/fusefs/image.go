package fusefs

import (
	"context"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/volume"
)

// imageKind says where a read-only image is listed, which is also how its
// file is found again.
type imageKind int

const (
	replicaImage    imageKind = iota // DIR/replicas/<disk>/<replica>.img
	spacesuitImage                   // DIR/spacesuits/<name>@<version>.img
	remoteDiskImage                  // DIR/<disk>.img of a disk another node owns
)

// image is one read-only image at one root: a replica, a spacesuit
// version, or a disk another node owns at its last committed root. Its
// content never changes, so everything here holds for the life of the
// inode; a remote disk's next commit is another inode.
type image struct {
	kind imageKind
	// ref names the image: the disk and replica, the spacesuit's name and
	// version, or the remote disk.
	ref       volume.Ref
	root      cid.Cid
	size      int64
	blockSize int64
	usedBytes int64
	created   time.Time
}

// imageKey identifies an image's inode. The root is part of it because a
// name can be reused: a replica or a spacesuit version removed and made
// again is another inode.
type imageKey struct {
	kind imageKind
	ref  volume.Ref
	root cid.Cid
}

func (img image) key() imageKey { return imageKey{img.kind, img.ref, img.root} }

// path names the image's file in the mount, for logs.
func (img image) path() string {
	switch img.kind {
	case spacesuitImage:
		return spacesuitName + "/" + img.ref.String() + imgSuffix
	case remoteDiskImage:
		return img.ref.Disk + imgSuffix
	}
	return replicasName + "/" + img.ref.Disk + "/" + img.ref.Replica + imgSuffix
}

// findImage returns the current description of the image kind lists under
// ref, or ENOENT.
func (f *filesys) findImage(ctx context.Context, kind imageKind, ref volume.Ref) (image, syscall.Errno) {
	switch kind {
	case spacesuitImage:
		return findSpacesuit(ctx, f, ref)
	case remoteDiskImage:
		return findRemoteDisk(ctx, f, ref.Disk)
	}
	return findReplica(ctx, f, ref.Disk, ref.Replica)
}

// openImage opens a view of img's current root.
func (f *filesys) openImage(ctx context.Context, img image) (*volume.View, error) {
	if img.kind == remoteDiskImage {
		return f.cfg.Remote.OpenRemoteDisk(ctx, img.ref.Disk)
	}
	return f.cfg.Volumes.OpenView(ctx, img.ref)
}

// imageFile is a read-only image file: one image at one root.
type imageFile struct {
	fs.Inode
	fs  *filesys
	img image
}

// viewHandle is an open image file. Its view pins the image's blocks, so
// the file stays readable if the image is removed meanwhile.
type viewHandle struct {
	view *volume.View
}

var (
	_ fs.NodeGetattrer   = (*imageFile)(nil)
	_ fs.NodeSetattrer   = (*imageFile)(nil)
	_ fs.NodeAccesser    = (*imageFile)(nil)
	_ fs.NodeOpener      = (*imageFile)(nil)
	_ fs.NodeReader      = (*imageFile)(nil)
	_ fs.NodeWriter      = (*imageFile)(nil)
	_ fs.NodeReleaser    = (*imageFile)(nil)
	_ fs.NodeOnForgetter = (*imageFile)(nil)
)

func (n *imageFile) ino() uint64 { return n.fs.inos.ino(n.img.key()) }

// live reports whether the image's name still stands for the root of this
// inode.
func (n *imageFile) live(ctx context.Context) bool {
	img, errno := n.fs.findImage(ctx, n.img.kind, n.img.ref)
	return errno == 0 && img.root == n.img.root
}

func (n *imageFile) attr(a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | 0o444
	a.Ino = n.ino()
	a.Nlink = 1
	a.Size = uint64(n.img.size)
	a.Blocks = uint64(n.img.usedBytes+511) / 512
	a.Blksize = uint32(min(n.img.blockSize, int64(n.fs.cfg.MaxWrite)))
	t := n.img.created
	a.SetTimes(&t, &t, &t)
}

func (n *imageFile) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if f == nil && !n.live(ctx) {
		return syscall.ENOENT
	}
	n.attr(&out.Attr)
	return 0
}

func (n *imageFile) Setattr(ctx context.Context, _ fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func (n *imageFile) Access(ctx context.Context, mask uint32) syscall.Errno {
	if mask&2 != 0 { // W_OK
		return syscall.EROFS
	}
	return 0
}

func (n *imageFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	v, err := n.fs.openImage(ctx, n.img)
	if err != nil {
		return nil, 0, n.fs.errno("open", n.img.path(), err)
	}
	// The name now stands for another root (a remote disk committed
	// since), or (for a spacesuit) a replica of the same name shadows it
	// in OpenView.
	if v.Root() != n.img.root {
		v.Close()
		return nil, 0, syscall.ENOENT
	}
	fuseFlags := uint32(fuse.FOPEN_KEEP_CACHE) // the content of a root never changes
	if n.fs.cfg.DirectIO {
		fuseFlags = fuse.FOPEN_DIRECT_IO
	}
	return &viewHandle{view: v}, fuseFlags, 0
}

func (n *imageFile) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h, ok := f.(*viewHandle)
	if !ok {
		return nil, syscall.EBADF
	}
	size := h.view.Size()
	if off >= size {
		return fuse.ReadResultData(nil), 0
	}
	p := dest[:min(int64(len(dest)), size-off)]
	if _, err := h.view.ReadAt(p, off); err != nil {
		return nil, n.fs.ioErrno("read", n.img.path(), err)
	}
	return fuse.ReadResultData(p), 0
}

func (n *imageFile) Write(ctx context.Context, _ fs.FileHandle, _ []byte, _ int64) (uint32, syscall.Errno) {
	return 0, syscall.EROFS
}

func (n *imageFile) Release(ctx context.Context, f fs.FileHandle) syscall.Errno {
	if h, ok := f.(*viewHandle); ok {
		h.view.Close()
	}
	return 0
}

// OnForget drops the inode number of an image name that now means another
// root or nothing.
func (n *imageFile) OnForget() {
	if !n.live(context.Background()) {
		n.fs.inos.forget(n.img.key())
	}
}
