package blockstore

import (
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"

	"github.com/weft-mesh/weft/internal/atomicfile"
)

// Every file of the store (segments, the ballast, the index) goes through a
// vfs.FS, the OS's unless Options.FS says otherwise: tests put the store on
// a crashable in-memory file system that drops what was not synced, or one
// that fails chosen operations (pebble's vfs.NewCrashableMem and
// vfs/errorfs).
//
// The put path's system calls have no vfs.File method: pwritev from many
// buffers, fdatasync retried on EINTR, sync_file_range, and fallocate that
// extends the file. For a file with an OS descriptor (Fd is valid) they
// are made on it exactly as before; another file gets the plain
// equivalent: one WriteAt per buffer, SyncData, no writeback hint,
// Preallocate. A file system that wraps the OS's keeps the fast path and
// so does not see those calls.

// fsOf returns the file system of o: Options.FS, or the OS's.
func (o Options) fsOf() vfs.FS {
	if o.FS == nil {
		return vfs.Default
	}
	return o.FS
}

// pwritev writes bufs at off, all of them or an error, and returns the
// bytes written. name is for errors.
func pwritev(f vfs.File, name string, off int64, bufs [][]byte) (int64, error) {
	fd := f.Fd()
	if fd == vfs.InvalidFd {
		var total int64
		for _, b := range bufs {
			if _, err := f.WriteAt(b, off+total); err != nil {
				return total, fmt.Errorf("write %s: %w", name, err)
			}
			total += int64(len(b))
		}
		return total, nil
	}
	var total int64
	for len(bufs) > 0 {
		chunk := bufs[:min(len(bufs), maxIovecs)]
		w, err := unix.Pwritev(int(fd), chunk, off+total)
		if err != nil {
			return total, fmt.Errorf("pwritev %s: %w", name, err)
		}
		if w == 0 {
			return total, fmt.Errorf("pwritev %s: %w", name, io.ErrShortWrite)
		}
		total += int64(w)
		// Drop what was written; a short write resumes mid-buffer.
		for w > 0 {
			if w >= len(bufs[0]) {
				w -= len(bufs[0])
				bufs = bufs[1:]
				continue
			}
			bufs[0] = bufs[0][w:]
			w = 0
		}
	}
	return total, nil
}

// startWriteback asks the OS to start writing [off, off+n) of f to the
// device, so that the fsync that follows has less to wait for. It is a
// hint: errors are ignored, and a file without a descriptor has no use for
// it.
func startWriteback(f vfs.File, off, n int64) {
	if fd := f.Fd(); fd != vfs.InvalidFd {
		_ = unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	}
}

// fdatasync makes f's data durable.
func fdatasync(f vfs.File) error {
	fd := f.Fd()
	if fd == vfs.InvalidFd {
		return f.SyncData()
	}
	for {
		err := unix.Fdatasync(int(fd))
		if err != unix.EINTR {
			return err
		}
	}
}

// dropCache drops f's clean pages from the OS's page cache, so that reads
// come from the device. After a failed writeback Linux may keep the pages
// it could not write, marked clean, holding bytes the device never got. It
// is advice: a failure leaves the cache as it was, and a file without a
// descriptor has no cache.
func dropCache(f vfs.File) {
	if fd := f.Fd(); fd != vfs.InvalidFd {
		_ = unix.Fadvise(int(fd), 0, 0, unix.FADV_DONTNEED)
	}
}

// allocate gives f n bytes of space on the device and makes it n bytes
// long. A file without a descriptor only gets the space its Preallocate
// gives.
func allocate(f vfs.File, n int64) error {
	if fd := f.Fd(); fd != vfs.InvalidFd {
		return unix.Fallocate(int(fd), 0, 0, n)
	}
	return f.Preallocate(0, n)
}

// truncate cuts f to size, if its file system can; it reports whether it
// did. Only a file without the method (an in-memory one in tests) cannot.
func truncate(f vfs.File, size int64) bool {
	t, ok := f.(interface{ Truncate(int64) error })
	return ok && t.Truncate(size) == nil
}

// syncDir makes the directory's entries durable.
func syncDir(fs vfs.FS, dir string) error { return noSpace(atomicfile.SyncDirIn(fs, dir)) }
