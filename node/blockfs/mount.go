package blockfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// ErrBusy is an unmount refused because files in the file system are open
// or a process works in it.
var ErrBusy = errors.New("file system is busy")

// ErrLiveMount refuses to replace a mount at a directory whose device
// still reads: it is not a stale mount of a gone FUSE file but a live file
// system (another disk, or the same disk through another file), and
// detaching it would give the disk two writers or hide data in use.
var ErrLiveMount = errors.New("directory holds a live mount of another file")

// ErrNotWritten fails an unmount whose last writes did not reach the
// disk (the file behind the loop device refused them): the file system
// stays mounted so nothing more is lost, and a retry syncs again.
var ErrNotWritten = errors.New("writes did not reach the disk")

// ErrFileGone comes with ErrNotWritten when the file behind a loop device
// is provably dead (backingDead), such as a FUSE file whose server died:
// its unsynced writes are lost, and no retry can get them through.
var ErrFileGone = errors.New("the file behind the loop device is gone")

// Attacher mounts disk files at directories. The zero value works on the
// host; tests may point it elsewhere.
type Attacher struct {
	Loops Loops
	// FSType is the file system made on an empty disk; "" means ext4.
	FSType string
	// SysDevBlock maps major:minor to devices; "" means /sys/dev/block.
	SysDevBlock string
}

func (a Attacher) sysDevBlock() string {
	if a.SysDevBlock == "" {
		return "/sys/dev/block"
	}
	return a.SysDevBlock
}

// Attachment describes a disk file mounted at a directory.
type Attachment struct {
	Device    string // the loop device, /dev/loopN
	FSType    string // the file system's type
	Formatted bool   // the file system was made by this call
}

// Mount mounts the file system on file at dir (made if missing), binding a
// loop device to file and making a file system on it first if the disk is
// empty (see Format). dir and its parents are made as needed. It is
// idempotent: a dir already mounted from file is left as it is; a dir
// mounted from a stale loop device (its file is dead: a read of the device
// fails, such as a FUSE file served by a process that died) is detached
// lazily and mounted anew. Any other mount at dir fails with ErrLiveMount.
func (a Attacher) Mount(ctx context.Context, file, dir string, flags uintptr) (Attachment, error) {
	return a.mount(ctx, file, dir, flags, false)
}

// mount is Mount, or MountReadOnly when readOnly: one path, which differs
// only where writing would (the device's mode, formatting, replacing a
// stale mount, journal replay).
func (a Attacher) mount(ctx context.Context, file, dir string, flags uintptr, readOnly bool) (Attachment, error) {
	id, err := statID(file)
	if err != nil {
		return Attachment{}, fmt.Errorf("mount %s at %s: %w", file, dir, err)
	}
	if at, done, err := a.mountedAt(ctx, file, dir, id, readOnly); done || err != nil {
		return at, err
	}
	before, err := a.Loops.Find(file)
	if err != nil {
		return Attachment{}, fmt.Errorf("mount %s at %s: %w", file, dir, err)
	}
	var dev string
	if readOnly {
		dev, err = a.Loops.AttachMode(ctx, file, true)
	} else {
		dev, err = a.Loops.Attach(ctx, file)
	}
	if err != nil {
		return Attachment{}, err
	}
	at, err := mountDevice(ctx, dev, file, dir, a.FSType, flags, readOnly)
	if err != nil && !slices.Contains(before, dev) {
		// Leave no device bound by a mount that failed, such as one of
		// a disk refused for holding unknown data.
		if derr := DetachDevice(context.WithoutCancel(ctx), dev); derr != nil {
			err = fmt.Errorf("%w (and free %s: %v)", err, dev, derr)
		}
	}
	return at, err
}

// mountedAt looks at what is mounted at dir before a mount of the file
// of id there: done with its Attachment when it is that file's file
// system (on a read-only device, if readOnly), nothing to do when dir is
// no mount point or held a stale mount, which is then detached (not if
// readOnly: that would be a write); an error otherwise.
func (a Attacher) mountedAt(ctx context.Context, file, dir string, id fileID, readOnly bool) (at Attachment, done bool, err error) {
	m, ok, err := mountAt(dir)
	if err != nil || !ok {
		return Attachment{}, false, err
	}
	dev := loopByDevice(a.sysDevBlock(), m.Device)
	if b, bound := loopBacking(dev); dev != "" && bound && b == id && (!readOnly || a.Loops.ReadOnly(dev)) {
		return Attachment{Device: dev, FSType: m.FSType}, true, nil
	}
	switch {
	case readOnly:
		return Attachment{}, false, fmt.Errorf("mount %s at %s read-only: %s is mounted there already (%s from %s)", file, dir, dir, m.FSType, m.Source)
	case dev == "":
		return Attachment{}, false, fmt.Errorf("mount %s at %s: %w (%s from %s, not a loop device)", file, dir, ErrLiveMount, m.FSType, m.Source)
	case !backingDead(dev):
		return Attachment{}, false, fmt.Errorf("mount %s at %s: %w (%s on %s: its file is still mounted and reads; unmount it first)", file, dir, ErrLiveMount, m.FSType, dev)
	}
	// Stale: whoever still has files open there keeps the old file
	// system (and gets errors from its gone file); new users get the new
	// one.
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return Attachment{}, false, fmt.Errorf("mount %s at %s: detach the stale mount (%s from %s): %w", file, dir, m.FSType, m.Source, err)
	}
	if err := DetachDevice(ctx, dev); err != nil {
		return Attachment{}, false, fmt.Errorf("mount %s at %s: free the stale device: %w", file, dir, err)
	}
	return Attachment{}, false, nil
}

// mountDevice mounts the file system on dev at dir: made first if dev
// is empty (Format), unless readOnly; then mounted read-only with no
// journal replayed (noReplay), where an empty dev fails with
// ErrNoFileSystem.
func mountDevice(ctx context.Context, dev, file, dir, fstype string, flags uintptr, readOnly bool) (Attachment, error) {
	var (
		typ, data, how string
		made           bool
		err            error
	)
	if readOnly {
		typ, err = existingFSType(ctx, dev, file)
		flags, data, how = flags|unix.MS_RDONLY, noReplay[typ], " read-only"
	} else {
		typ, made, err = Format(ctx, dev, fstype)
	}
	if err != nil {
		return Attachment{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Attachment{}, fmt.Errorf("mount %s at %s: %w", file, dir, err)
	}
	if err := unix.Mount(dev, dir, typ, flags, data); err != nil {
		return Attachment{}, fmt.Errorf("mount %s (%s on %s)%s at %s: %w", dev, typ, file, how, dir, err)
	}
	return Attachment{Device: dev, FSType: typ, Formatted: made}, nil
}

// Unmount writes the file system at dir through to its disk, unmounts it
// and unbinds the loop devices on file and the one that was mounted at
// dir. A busy file system stays mounted, with an error matching ErrBusy;
// one whose writes did not reach a disk that still answers stays mounted,
// with an error matching ErrNotWritten (on a dead disk file it is detached
// and the error says so). Nothing mounted and nothing
// bound is success: it is idempotent. file may be gone.
func (a Attacher) Unmount(ctx context.Context, file, dir string) error {
	for {
		m, ok, err := mountAt(dir)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		dev := loopByDevice(a.sysDevBlock(), m.Device)
		if err := syncMount(dir, dev); err != nil {
			if dev == "" || !backingDead(dev) {
				// The disk is there but refused the writes: keep the
				// mount, a retry may get them through.
				return fmt.Errorf("unmount %s: %w", dir, err)
			}
			// The file behind the device is dead (its FUSE server
			// died): what was not written is lost whatever is done,
			// and a mount kept on it would fail every retry. Say so,
			// and take it down.
			if derr := unix.Unmount(dir, unix.MNT_DETACH); derr != nil {
				return fmt.Errorf("unmount %s: %w; detach it: %v", dir, err, derr)
			}
			if derr := DetachDevice(ctx, dev); derr != nil {
				return fmt.Errorf("unmount %s: %w; free %s: %v", dir, err, dev, derr)
			}
			return fmt.Errorf("unmount %s: %w: the file behind %s is gone, unsynced writes are lost; detached it", dir, err, dev)
		}
		if err := unix.Unmount(dir, 0); err != nil {
			if errors.Is(err, unix.EBUSY) {
				return fmt.Errorf("unmount %s: %w (%w)", dir, ErrBusy, err)
			}
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
		if dev != "" {
			if err := DetachDevice(ctx, dev); err != nil {
				return fmt.Errorf("unmount %s: %w", dir, err)
			}
		}
	}
	if file == "" {
		return nil
	}
	return a.Loops.Detach(ctx, file)
}

// syncMount writes the file system at dir and the loop device dev ("" if
// none) through to the disk file, and fails with ErrNotWritten if they did
// not get there: umount(2) drops writeback errors, so without this an
// unmount would succeed though the container's last writes were lost.
// syncfs reports writeback errors (Linux 5.8 and later); the fsync of the
// device sends the flush through the loop driver to the file (for weft's
// FUSE file: a commit).
func syncMount(dir, dev string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	err = unix.Syncfs(fd)
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("sync %s: %w (%w)", dir, ErrNotWritten, err)
	}
	if dev == "" {
		return nil
	}
	return FlushDevice(dev)
}

// FlushDevice writes what was written through the loop device dev
// through to its file: an fsync of the device writes its dirty pages and
// sends a flush through the loop driver to the file, an fsync of it (for
// weft's FUSE file a Head.Flush: durable, as after an NBD FLUSH). Without
// it, losetup --detach drops the file with no flush, and the writes of a
// process that did not fsync are not durable. A read-only or unbound dev
// has nothing to flush. A failure matches ErrNotWritten, and ErrFileGone
// too when the file is dead.
func FlushDevice(dev string) error {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("flush %s: %w", dev, err)
	}
	defer unix.Close(fd)
	info, err := unix.IoctlLoopGetStatus64(fd)
	switch {
	case errors.Is(err, unix.ENXIO):
		return nil // unbound
	case err == nil && info.Flags&unix.LO_FLAGS_READ_ONLY != 0:
		return nil // nothing was written through it
	}
	// An error of the status (a dead file answers ENOTCONN) is left to
	// the fsync and backingDead to judge.
	if err := unix.Fsync(fd); err != nil {
		if backingDead(dev) {
			return fmt.Errorf("flush %s: %w: %w (%w)", dev, ErrNotWritten, ErrFileGone, err)
		}
		return fmt.Errorf("flush %s: %w (%w)", dev, ErrNotWritten, err)
	}
	return nil
}

// backingDead reports whether the file behind the loop device dev is
// provably dead: the file system it lives on is no longer mounted (a FUSE
// mount whose server died is detached by whoever found it answering
// ENOTCONN; a stopping daemon unmounts its own), or a read of the device
// fails, or so does the kernel's stat of the file. A device that is not
// bound is not known dead.
func backingDead(dev string) bool {
	b, err := loopStatus(dev)
	if errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.EIO) {
		return true
	}
	if err != nil {
		return false
	}
	all, err := readMounts()
	if err != nil {
		return false
	}
	majMin := fmt.Sprintf("%d:%d", unix.Major(b.dev), unix.Minor(b.dev))
	if !slices.ContainsFunc(all, func(m mountEntry) bool { return m.Device == majMin }) {
		return true
	}
	return readsBack(dev) != nil
}

// readsBack reads the first block of dev past the page cache (O_DIRECT):
// it fails when the file behind a loop device is dead, such as a FUSE
// file whose server is gone (ENOTCONN below, EIO here).
func readsBack(dev string) error {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("read %s: %w", dev, err)
	}
	defer unix.Close(fd)
	// O_DIRECT wants an aligned buffer: an anonymous mapping is one.
	buf, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return fmt.Errorf("read %s: %w", dev, err)
	}
	defer unix.Munmap(buf)
	if _, err := unix.Pread(fd, buf, 0); err != nil {
		return fmt.Errorf("read %s: %w", dev, err)
	}
	return nil
}
