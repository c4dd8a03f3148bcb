package blockfs

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrBusy is an unmount refused because files in the file system are open
// or a process works in it.
var ErrBusy = errors.New("file system is busy")

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
// mounted from a stale loop device (its file is gone, such as a FUSE file
// served by a process that restarted) is detached lazily and mounted anew.
func (a Attacher) Mount(ctx context.Context, file, dir string, flags uintptr) (Attachment, error) {
	id, err := statID(file)
	if err != nil {
		return Attachment{}, fmt.Errorf("mount %s at %s: %w", file, dir, err)
	}
	if m, ok, err := mountAt(dir); err != nil {
		return Attachment{}, err
	} else if ok {
		dev := loopByDevice(a.sysDevBlock(), m.Device)
		if b, bound := loopBacking(dev); dev != "" && bound && b == id {
			return Attachment{Device: dev, FSType: m.FSType}, nil
		}
		// Stale: whoever still has files open there keeps the old file
		// system (and gets errors from its gone file); new users get the
		// new one.
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			return Attachment{}, fmt.Errorf("mount %s at %s: detach the stale mount (%s from %s): %w", file, dir, m.FSType, m.Source, err)
		}
		if dev != "" {
			if err := DetachDevice(ctx, dev); err != nil {
				return Attachment{}, fmt.Errorf("mount %s at %s: free the stale device: %w", file, dir, err)
			}
		}
	}
	before, err := a.Loops.Find(file)
	if err != nil {
		return Attachment{}, fmt.Errorf("mount %s at %s: %w", file, dir, err)
	}
	dev, err := a.Loops.Attach(ctx, file)
	if err != nil {
		return Attachment{}, err
	}
	at, err := mountDevice(ctx, dev, file, dir, a.FSType, flags)
	if err != nil && len(before) == 0 {
		// Leave no device bound by a mount that failed, such as one of
		// a disk refused for holding unknown data.
		if derr := DetachDevice(context.WithoutCancel(ctx), dev); derr != nil {
			err = fmt.Errorf("%w (and free %s: %v)", err, dev, derr)
		}
	}
	return at, err
}

// mountDevice makes a file system on dev if it is empty and mounts it.
func mountDevice(ctx context.Context, dev, file, dir, fstype string, flags uintptr) (Attachment, error) {
	typ, made, err := Format(ctx, dev, fstype)
	if err != nil {
		return Attachment{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Attachment{}, fmt.Errorf("mount %s at %s: %w", file, dir, err)
	}
	if err := unix.Mount(dev, dir, typ, flags, ""); err != nil {
		return Attachment{}, fmt.Errorf("mount %s (%s on %s) at %s: %w", dev, typ, file, dir, err)
	}
	return Attachment{Device: dev, FSType: typ, Formatted: made}, nil
}

// Unmount unmounts what is mounted at dir and unbinds the loop devices on
// file and the one that was mounted at dir. A busy file system stays
// mounted, with an error matching ErrBusy. Nothing mounted and nothing
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
		if err := unix.Unmount(dir, 0); err != nil {
			if errors.Is(err, unix.EBUSY) {
				return fmt.Errorf("unmount %s: %w (%w)", dir, ErrBusy, err)
			}
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
		if dev := loopByDevice(a.sysDevBlock(), m.Device); dev != "" {
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
