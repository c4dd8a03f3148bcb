package blockfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	return a.mount(ctx, file, dir, flags, true)
}

// existingFSType is the type of the file system on dev (of file), which
// a read-only mount cannot make: none fails with ErrNoFileSystem.
func existingFSType(ctx context.Context, dev, file string) (string, error) {
	typ, err := FSType(ctx, dev)
	if err != nil {
		return "", err
	}
	if typ == "" || strings.HasPrefix(typ, "PTTYPE:") {
		return "", fmt.Errorf("mount %s read-only: %w (found %q; it is made on the first writable use)", file, ErrNoFileSystem, typ)
	}
	return typ, nil
}
