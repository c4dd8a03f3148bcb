package blockfs

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// FileNumbers returns the device and inode numbers of path: what a loop
// device bound to it remembers (LOOP_GET_STATUS64), so that a caller can
// record a device it binds and free exactly that one later, after the
// file's path has come to name another file (a FUSE mount served again).
func FileNumbers(path string) (dev, ino uint64, err error) {
	id, err := statID(path)
	return id.dev, id.ino, err
}

// DetachIfOn unbinds the loop device dev if it is still bound to the file
// of the given numbers (FileNumbers), or bound to a file that no longer
// answers (the FUSE server behind it died: the kernel cannot read its
// status). A device unbound, or bound to another file since, is left.
func DetachIfOn(ctx context.Context, dev string, fileDev, fileIno uint64) error {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("detach %s: %w", dev, err)
	}
	info, err := unix.IoctlLoopGetStatus64(fd)
	unix.Close(fd)
	switch {
	case errors.Is(err, unix.ENXIO):
		return nil // unbound
	case err == nil && (info.Device != fileDev || info.Inode != fileIno):
		return nil // bound to another file since
	}
	if err := DetachDevice(ctx, dev); err != nil {
		return fmt.Errorf("detach %s: %w", dev, err)
	}
	return nil
}

// LoopDeviceAt returns the loop device behind path: the one mounted at
// path (a file system on it), or the device node bound there (a block
// device bind-mounted on a file). ok is false when path is no mount point
// or what is there is not a loop device.
func (a Attacher) LoopDeviceAt(path string) (dev string, ok bool, err error) {
	m, mounted, err := mountAt(path)
	if err != nil || !mounted {
		return "", false, err
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", false, fmt.Errorf("stat %s: %w", path, err)
	}
	majMin := m.Device
	if st.Mode&unix.S_IFMT == unix.S_IFBLK {
		majMin = fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	dev = loopByDevice(a.sysDevBlock(), majMin)
	return dev, dev != "", nil
}
