package blockfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Loops finds and binds loop devices. The zero value uses the host's
// /sys/block and /dev.
type Loops struct {
	// SysBlock is where the block devices are listed; "" means /sys/block.
	SysBlock string
}

func (l Loops) sysBlock() string {
	if l.SysBlock == "" {
		return "/sys/block"
	}
	return l.SysBlock
}

// fileID names a file the way a loop device remembers it.
type fileID struct{ dev, ino uint64 }

func statID(path string) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileID{}, fmt.Errorf("stat %s: %w", path, err)
	}
	return fileID{dev: st.Dev, ino: st.Ino}, nil
}

// bound lists the bound loop devices (/dev/loopN) with the file each is
// on. A device unbound or gone meanwhile is left out.
func (l Loops) bound() (map[string]fileID, error) {
	names, err := filepath.Glob(filepath.Join(l.sysBlock(), "loop[0-9]*"))
	if err != nil {
		return nil, fmt.Errorf("list loop devices: %w", err)
	}
	out := map[string]fileID{}
	for _, n := range names {
		dev := "/dev/" + filepath.Base(n)
		id, ok := loopBacking(dev)
		if ok {
			out[dev] = id
		}
	}
	return out, nil
}

// loopBacking reads which file the loop device dev is bound to.
func loopBacking(dev string) (fileID, bool) {
	id, err := loopStatus(dev)
	return id, err == nil
}

// loopStatus reads which file the loop device dev is bound to: ENXIO if
// none; the error of a stat of the file if that fails (ENOTCONN: a FUSE
// file whose server is gone).
func loopStatus(dev string) (fileID, error) {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fileID{}, err
	}
	defer unix.Close(fd)
	info, err := unix.IoctlLoopGetStatus64(fd)
	if err != nil {
		return fileID{}, err
	}
	return fileID{dev: info.Device, ino: info.Inode}, nil
}

// Find returns the loop devices bound to file (the file itself, by device
// and inode number), sorted; none is not an error.
func (l Loops) Find(file string) ([]string, error) {
	id, err := statID(file)
	if err != nil {
		return nil, err
	}
	all, err := l.bound()
	if err != nil {
		return nil, err
	}
	var out []string
	for dev, b := range all {
		if b == id {
			out = append(out, dev)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Attach returns a loop device bound to file, binding a free one if none
// is. Concurrent calls for one file from several processes may bind two
// devices; Detach frees them all.
func (l Loops) Attach(ctx context.Context, file string) (string, error) {
	devs, err := l.Find(file)
	if err != nil {
		return "", fmt.Errorf("attach %s: %w", file, err)
	}
	if len(devs) > 0 {
		return devs[0], nil
	}
	return bind(ctx, file, false)
}

// bind binds a free loop device to file, read-only if asked, and returns
// it. A writable bind of a file that opens only for reading gives a
// read-only device (losetup falls back to one).
func bind(ctx context.Context, file string, readOnly bool) (string, error) {
	args := []string{"--find", "--show", file}
	if readOnly {
		args = append([]string{"--read-only"}, args...)
	}
	out, err := run(ctx, "losetup", args...)
	if err != nil {
		return "", fmt.Errorf("attach %s: %w", file, err)
	}
	return strings.TrimSpace(out), nil
}

// Detach unbinds every loop device bound to file. A device still in use
// (mounted) is unbound by the kernel once its last user lets go. A missing
// file has no devices: that is not an error.
func (l Loops) Detach(ctx context.Context, file string) error {
	devs, err := l.Find(file)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTCONN) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("detach %s: %w", file, err)
	}
	for _, dev := range devs {
		if err := DetachDevice(ctx, dev); err != nil {
			return fmt.Errorf("detach %s: %w", file, err)
		}
	}
	return nil
}

// DetachDevice flushes the loop device dev (FlushDevice) and unbinds
// it; one already unbound is fine. A flush that fails leaves dev bound,
// with an error matching ErrNotWritten, so that a retry flushes again;
// but one whose file is dead (ErrFileGone: its FUSE server died, say) is
// unbound anyway, since nothing more can reach that file.
func DetachDevice(ctx context.Context, dev string) error {
	if !isBound(dev) {
		return nil
	}
	if err := FlushDevice(dev); err != nil && !errors.Is(err, ErrFileGone) {
		return fmt.Errorf("detach %s: %w", dev, err)
	}
	if _, err := run(ctx, "losetup", "--detach", dev); err != nil {
		if !isBound(dev) {
			return nil // unbound meanwhile
		}
		return err
	}
	return nil
}

// isBound reports whether dev exists and is bound to a file, live or not.
func isBound(dev string) bool {
	_, err := loopStatus(dev)
	return !errors.Is(err, unix.ENXIO) && !errors.Is(err, os.ErrNotExist)
}

// run runs a tool and returns its standard output; its error says the
// command and what the tool printed.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(string(out))
		}
		return string(out), &ToolError{Cmd: name + " " + strings.Join(args, " "), Output: msg, Err: err}
	}
	return string(out), nil
}

// ToolError is a failed run of an outside tool (losetup, blkid, mkfs).
type ToolError struct {
	Cmd    string
	Output string // what it printed on stderr
	Err    error  // usually an *exec.ExitError
}

func (e *ToolError) Error() string {
	if e.Output == "" {
		return fmt.Sprintf("%s: %v", e.Cmd, e.Err)
	}
	return fmt.Sprintf("%s: %v: %s", e.Cmd, e.Err, e.Output)
}

func (e *ToolError) Unwrap() error { return e.Err }

// exitCode is the exit status of a tool run, or -1.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}
