package fusefs

import (
	"context"
	"errors"
	"syscall"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/volume"
)

// errno maps an error from the volume manager to what the kernel passes on
// to the caller. op and name go to the log for errors the caller would
// otherwise only see as EIO.
func (f *filesys) errno(op, name string, err error) syscall.Errno {
	var e syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.Is(err, volume.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, volume.ErrInvalid):
		e = syscall.EINVAL
	case errors.Is(err, volume.ErrReadOnly):
		e = syscall.EROFS
	case errors.Is(err, blockstore.ErrNoSpace), errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		e = syscall.ENOSPC
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	default:
		e = syscall.EIO
	}
	f.log.Warn("fuse request failed", "op", op, "file", name, "errno", e.Error(), "err", err)
	return e
}

// ioErrno is errno for reads and writes on an open file: a disk removed
// under an open file is an I/O error, not a missing name.
func (f *filesys) ioErrno(op, name string, err error) syscall.Errno {
	if errors.Is(err, volume.ErrNotFound) {
		f.log.Debug("fuse I/O on a removed disk", "op", op, "file", name)
		return syscall.EIO
	}
	return f.errno(op, name, err)
}
