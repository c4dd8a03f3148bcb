package fusefs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/weft-mesh/weft/volume"
)

// fallocate(2) modes the disk files understand.
const (
	fallocKeepSize  = 0x01
	fallocPunchHole = 0x02
	fallocZeroRange = 0x10
)

// diskFile is DIR/<disk>.img: one incarnation of a disk head.
type diskFile struct {
	fs.Inode
	fs   *filesys
	head *volume.Head
}

// diskHandle is an open disk file.
type diskHandle struct {
	writable bool
}

var (
	_ fs.NodeGetattrer   = (*diskFile)(nil)
	_ fs.NodeSetattrer   = (*diskFile)(nil)
	_ fs.NodeOpener      = (*diskFile)(nil)
	_ fs.NodeReader      = (*diskFile)(nil)
	_ fs.NodeWriter      = (*diskFile)(nil)
	_ fs.NodeFsyncer     = (*diskFile)(nil)
	_ fs.NodeFlusher     = (*diskFile)(nil)
	_ fs.NodeAllocater   = (*diskFile)(nil)
	_ fs.NodeReleaser    = (*diskFile)(nil)
	_ fs.NodeOnForgetter = (*diskFile)(nil)
)

func (n *diskFile) name() string { return n.head.Name() + imgSuffix }

func (n *diskFile) ino() uint64 { return n.fs.inos.ino(n.head) }

// live reports whether the disk still has this head: it was not removed
// (and perhaps created again) since the inode was made.
func (n *diskFile) live() bool {
	h, err := n.fs.cfg.Volumes.Head(n.head.Name())
	return err == nil && h == n.head
}

func (n *diskFile) attr(a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | 0o644
	a.Ino = n.ino()
	a.Nlink = 1
	a.Size = uint64(n.head.Size())
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = uint32(min(n.head.BlockSize(), int64(n.fs.cfg.MaxWrite)))
	n.fs.setTimes(a)
}

// Getattr answers ENOENT for the path of a removed head; an open handle
// still stats, so that its reads reach Read and fail with EIO.
func (n *diskFile) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if f == nil && !n.live() {
		return syscall.ENOENT
	}
	n.attr(&out.Attr)
	return 0
}

// Setattr refuses size changes with EPERM: a disk's size is set through
// weft. Times, modes and owners are accepted and not kept.
func (n *diskFile) Setattr(ctx context.Context, _ fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if !n.live() {
		return syscall.ENOENT
	}
	if sz, ok := in.GetSize(); ok && int64(sz) != n.head.Size() {
		n.fs.log.Debug("fuse refused resize", "file", n.name(), "size", sz)
		return syscall.EPERM
	}
	n.attr(&out.Attr)
	return 0
}

func (n *diskFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if !n.live() {
		return nil, 0, syscall.ENOENT
	}
	if flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EPERM
	}
	n.fs.open.opened(n)
	return &diskHandle{writable: flags&syscall.O_ACCMODE != syscall.O_RDONLY}, OpenFlags(flags, n.fs.cfg.DirectIO), 0
}

// Release forgets a closed handle: the disk is in use while one is open.
func (n *diskFile) Release(ctx context.Context, _ fs.FileHandle) syscall.Errno {
	n.fs.open.released(n)
	return 0
}

func (n *diskFile) Read(ctx context.Context, _ fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	size := n.head.Size()
	if off >= size {
		return fuse.ReadResultData(nil), 0
	}
	p := dest[:min(int64(len(dest)), size-off)]
	if _, err := n.head.ReadAtContext(ctx, p, off); err != nil {
		return nil, n.fs.ioErrno("read", n.name(), err)
	}
	return fuse.ReadResultData(p), 0
}

// Write writes data at off; a write that starts at or past the end of the
// disk fails with EFBIG, one that crosses it is cut short.
func (n *diskFile) Write(ctx context.Context, _ fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	size := n.head.Size()
	if off >= size {
		return 0, syscall.EFBIG
	}
	p := data[:min(int64(len(data)), size-off)]
	w, err := n.head.WriteAtContext(ctx, p, off)
	if err != nil {
		return uint32(w), n.fs.ioErrno("write", n.name(), err)
	}
	return uint32(w), 0
}

// Fsync makes every write that returned durable on this node, like an NBD
// FLUSH.
func (n *diskFile) Fsync(ctx context.Context, _ fs.FileHandle, flags uint32) syscall.Errno {
	if err := n.head.Flush(ctx); err != nil {
		return n.fs.ioErrno("fsync", n.name(), err)
	}
	return 0
}

// Flush (close(2) of a descriptor) makes the writes durable if the
// descriptor could write.
func (n *diskFile) Flush(ctx context.Context, f fs.FileHandle) syscall.Errno {
	if h, ok := f.(*diskHandle); ok && !h.writable {
		return 0
	}
	return n.Fsync(ctx, f, 0)
}

// Allocate zeroes the range for FALLOC_FL_PUNCH_HOLE and
// FALLOC_FL_ZERO_RANGE (discard through a loop device) and accepts plain
// preallocation inside the disk as a no-op.
func (n *diskFile) Allocate(ctx context.Context, _ fs.FileHandle, off, length uint64, mode uint32) syscall.Errno {
	size := uint64(n.head.Size())
	end := off + length
	if end < off || end > size {
		if mode&fallocKeepSize == 0 || off >= size {
			return syscall.EFBIG
		}
		end = size
	}
	switch {
	case mode&^(fallocKeepSize|fallocPunchHole|fallocZeroRange) != 0:
		return syscall.EOPNOTSUPP
	case mode&(fallocPunchHole|fallocZeroRange) != 0:
		if err := n.head.Zero(ctx, int64(off), int64(end-off)); err != nil {
			return n.fs.ioErrno("fallocate", n.name(), err)
		}
	}
	return 0
}

// OnForget drops the inode number of a head that is gone for good.
func (n *diskFile) OnForget() {
	if !n.live() {
		n.fs.inos.forget(n.head)
	}
}

// OpenFlags returns the FUSE open flags of a disk file opened with flags
// (open(2)'s); directIO is Config.DirectIO. cmd/fuseceiling opens
// its file with them too.
func OpenFlags(flags uint32, directIO bool) uint32 {
	switch {
	case flags&syscall.O_DIRECT != 0:
		// An O_DIRECT opener (QEMU's cache=none, loop --direct-io) gets
		// the kernel's direct-I/O mode, in which writes from several
		// threads reach weft at once; on a cached open the kernel holds
		// the file's lock across each write. Writes from such a handle
		// drop the cached pages they cover (the kernel does that since
		// 6.6), so cached handles stay coherent.
		return fuse.FOPEN_DIRECT_IO | fuse.FOPEN_PARALLEL_DIRECT_WRITES
	case directIO:
		return fuse.FOPEN_DIRECT_IO
	}
	return 0
}
