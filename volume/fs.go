package volume

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"

	"github.com/weft-mesh/weft/internal/atomicfile"
)

// The overlays, their directories and the catalog go through a vfs.FS,
// Config.FS, the OS's unless a power-loss test gives a crashable in-memory
// one (pebble's vfs.NewCrashableMem) or one that fails chosen operations
// (vfs/errorfs).
//
// On the OS's file system an overlay file is an *os.File opened as before
// (mode 0600, which vfs.FS cannot set) and every fast path stays: the NBD
// server splices into it (Head.WriteFrom), zeroing punches holes. On
// another, the plain equivalents: WriteFrom's fill writes into a scratch OS
// file whose bytes are then copied in, and zeroing writes zeros (an
// in-memory file has no holes to punch).

// overlayFile is what an overlay needs of a file; *os.File and vfs.File
// both provide it.
type overlayFile interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
	Sync() error
	Fd() uintptr
}

// fsOf returns Config.FS, or the OS's file system.
func (c Config) fsOf() vfs.FS {
	if c.FS == nil {
		return vfs.Default
	}
	return c.FS
}

// openOverlayFile opens or creates the file at path, size bytes long, and
// reports whether it created it.
func openOverlayFile(fsys vfs.FS, path string, size int64) (f overlayFile, created bool, err error) {
	_, err = fsys.Stat(path)
	created = errors.Is(err, os.ErrNotExist)
	if fsys == vfs.Default {
		osf, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, false, err
		}
		// Drop the file's clean cached pages, so that reads come from the
		// device: after a failed writeback (see overlay.syncErr) the page
		// cache may still hold bytes the device never got, and a reopened
		// overlay must serve and commit only what is durable. Advice only:
		// a failure costs nothing but that.
		_ = unix.Fadvise(int(osf.Fd()), 0, 0, unix.FADV_DONTNEED)
		f = osf
	} else if f, err = fsys.OpenReadWrite(path, vfs.WriteCategoryUnspecified); err != nil {
		return nil, false, err
	}
	if size < 0 {
		return f, created, nil
	}
	if err := resize(f, size); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("size %s: %w", path, err)
	}
	return f, created, nil
}

// resize makes f size bytes long. A file without Truncate (an in-memory
// one) can only grow: a zero is written at its last byte.
func resize(f overlayFile, size int64) error {
	if t, ok := f.(interface{ Truncate(int64) error }); ok {
		return t.Truncate(size)
	}
	st, ok := f.(interface{ Stat() (vfs.FileInfo, error) })
	if !ok {
		return fmt.Errorf("file can neither be truncated nor stat'ed")
	}
	fi, err := st.Stat()
	if err != nil {
		return err
	}
	if fi.Size() >= size || size == 0 {
		return nil
	}
	_, err = f.WriteAt([]byte{0}, size-1)
	return err
}

// punch makes [off, off+n) of f read as zeros, freeing its space where the
// file system can.
func punch(f overlayFile, off, n int64) error {
	if fd := f.Fd(); fd != vfs.InvalidFd {
		return unix.Fallocate(int(fd), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	}
	zeros := make([]byte, min(n, 1<<20))
	for done := int64(0); done < n; {
		k := min(n-done, int64(len(zeros)))
		if _, err := f.WriteAt(zeros[:k], off+done); err != nil {
			return err
		}
		done += k
	}
	return nil
}

// fillFrom runs fill, which writes n bytes at off into an *os.File, so
// that they land at off in f: directly if f is one, else through a scratch
// file whose bytes are copied in.
func fillFrom(f overlayFile, off, n int64, fill func(dst *os.File) error) error {
	if osf, ok := f.(*os.File); ok {
		return fill(osf)
	}
	scratch, err := os.CreateTemp("", "weft-overlay-fill-*")
	if err != nil {
		return err
	}
	defer os.Remove(scratch.Name())
	defer scratch.Close()
	if err := fill(scratch); err != nil {
		return err
	}
	buf := make([]byte, n)
	if _, err := scratch.ReadAt(buf, off); err != nil {
		return err
	}
	_, err = f.WriteAt(buf, off)
	return err
}

// syncDirs makes the entries of each directory durable.
func syncDirs(fsys vfs.FS, dirs ...string) error {
	for _, d := range dirs {
		if err := atomicfile.SyncDirIn(fsys, d); err != nil {
			return err
		}
	}
	return nil
}
