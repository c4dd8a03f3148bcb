package blockfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNoFileSystem refuses a read-only mount of a disk that holds no file
// system: making one would write the disk.
var ErrNoFileSystem = errors.New("disk holds no file system")

// ErrReadOnlyFile refuses a writable loop device on a file that opens
// only for reading (losetup would fall back to a read-only device).
var ErrReadOnlyFile = errors.New("file is read-only")

// ReadOnly reports whether the loop device dev refuses writes.
func (l Loops) ReadOnly(dev string) bool {
	b, err := os.ReadFile(filepath.Join(l.sysBlock(), filepath.Base(dev), "ro"))
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// AttachMode returns a loop device bound to file that is read-only, or
// writable, as asked, binding one if none is (Attach answers a device of
// either mode). A writable device on a file that only reads fails with
// ErrReadOnlyFile and leaves no device bound.
func (l Loops) AttachMode(ctx context.Context, file string, readOnly bool) (string, error) {
	devs, err := l.Find(file)
	if err != nil {
		return "", fmt.Errorf("attach %s: %w", file, err)
	}
	for _, d := range devs {
		if l.ReadOnly(d) == readOnly {
			return d, nil
		}
	}
	dev, err := bind(ctx, file, readOnly)
	if err != nil {
		return "", err
	}
	if !readOnly && l.ReadOnly(dev) {
		err := fmt.Errorf("attach %s for writing: %w (losetup bound %s read-only)", file, ErrReadOnlyFile, dev)
		return "", errors.Join(err, DetachDevice(context.WithoutCancel(ctx), dev))
	}
	return dev, nil
}

// noReplay is the mount option that keeps a file system from replaying
// its journal (a write) when mounted read-only.
var noReplay = map[string]string{"ext3": "noload", "ext4": "noload", "xfs": "norecovery"}

// MountReadOnly mounts the file system on file at dir read-only without
// writing the disk at all: a read-only loop device, no file system made
// (an empty disk fails with ErrNoFileSystem), no journal replayed (ext4 is
// mounted "ro,noload": a disk copied while mounted needs recovery, and a
// read-only ext4 mount on a writable device would replay it). A dir
// already mounted from a read-only device on file is left as it is; one
// holding another mount fails: unmount it first.
func (a Attacher) MountReadOnly(ctx context.Context, file, dir string, flags uintptr) (Attachment, error) {
	id, err := statID(file)
	if err != nil {
		return Attachment{}, fmt.Errorf("mount %s at %s: %w", file, dir, err)
	}
	if m, ok, err := mountAt(dir); err != nil {
		return Attachment{}, err
	} else if ok {
		dev := loopByDevice(a.sysDevBlock(), m.Device)
		if b, bound := loopBacking(dev); dev != "" && bound && b == id && a.Loops.ReadOnly(dev) {
			return Attachment{Device: dev, FSType: m.FSType}, nil
		}
		return Attachment{}, fmt.Errorf("mount %s at %s read-only: %s is mounted there already (%s from %s)", file, dir, dir, m.FSType, m.Source)
	}
	before, err := a.Loops.Find(file)
	if err != nil {
		return Attachment{}, fmt.Errorf("mount %s at %s: %w", file, dir, err)
	}
	dev, err := a.Loops.AttachMode(ctx, file, true)
	if err != nil {
		return Attachment{}, err
	}
	at, err := mountReadOnly(ctx, dev, file, dir, flags)
	if err != nil && !slices.Contains(before, dev) {
		if derr := DetachDevice(context.WithoutCancel(ctx), dev); derr != nil {
			err = fmt.Errorf("%w (and free %s: %v)", err, dev, derr)
		}
	}
	return at, err
}

func mountReadOnly(ctx context.Context, dev, file, dir string, flags uintptr) (Attachment, error) {
	typ, err := FSType(ctx, dev)
	if err != nil {
		return Attachment{}, err
	}
	if typ == "" || strings.HasPrefix(typ, "PTTYPE:") {
		return Attachment{}, fmt.Errorf("mount %s read-only: %w (found %q; it is made on the first writable use)", file, ErrNoFileSystem, typ)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Attachment{}, fmt.Errorf("mount %s at %s: %w", file, dir, err)
	}
	if err := unix.Mount(dev, dir, typ, flags|unix.MS_RDONLY, noReplay[typ]); err != nil {
		return Attachment{}, fmt.Errorf("mount %s (%s on %s) read-only at %s: %w", dev, typ, file, dir, err)
	}
	return Attachment{Device: dev, FSType: typ}, nil
}
