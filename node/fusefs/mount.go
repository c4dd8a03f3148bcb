package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/weft-mesh/weft/volume"
)

// Volumes is what the file system needs of the volume manager;
// *volume.Manager implements it. Its methods must be safe for concurrent
// use: the kernel sends requests in parallel.
type Volumes interface {
	Head(name string) (*volume.Head, error)
	ListDisks(ctx context.Context) ([]volume.DiskInfo, error)
	ListReplicas(ctx context.Context, disk string) ([]volume.ReplicaInfo, error)
	ReplicaDisks(ctx context.Context) ([]string, error)
	ListSpacesuits(ctx context.Context) []volume.SpacesuitInfo
	OpenView(ctx context.Context, ref volume.Ref) (*volume.View, error)
}

// Errors of Mount and Unmount, checked with errors.Is.
var (
	// ErrBusy means a file in the mount is open (a loop device, a shell's
	// working directory, ...): close it, or unmount lazily.
	ErrBusy = errors.New("mount is busy")
	// ErrMountPoint means the directory cannot be mounted on.
	ErrMountPoint = errors.New("bad mount point")
)

// Config configures a mount.
type Config struct {
	Volumes Volumes
	// Remote, if set, adds the disks another node owns, read-only, at
	// their last committed state: DIR/<disk>.img for a disk with no head
	// here.
	Remote RemoteDisks
	// Logger receives I/O errors the kernel only sees as an errno; nil
	// discards them.
	Logger *slog.Logger
	// MaxWrite is the largest read or write request the kernel sends.
	MaxWrite int
	// DirectIO bypasses the kernel page cache for disk files (see the
	// package documentation).
	DirectIO bool
	// AttrTimeout is how long the kernel may cache a file's attributes.
	// Sizes never change for an inode, so this only bounds how long a
	// removed disk's open file still stats.
	AttrTimeout time.Duration
	// Debug logs every FUSE request (very verbose).
	Debug bool
}

// DefaultConfig returns a Config with everything but Volumes set.
func DefaultConfig() Config {
	return Config{MaxWrite: 1 << 20, AttrTimeout: time.Second}
}

// Validate reports whether the Config can be used.
func (c Config) Validate() error {
	switch {
	case c.Volumes == nil:
		return errors.New("fusefs config: Volumes is nil")
	case c.MaxWrite < 4<<10 || c.MaxWrite > 1<<20:
		return fmt.Errorf("fusefs config: MaxWrite %d: want 4K to 1M", c.MaxWrite)
	case c.AttrTimeout < 0:
		return fmt.Errorf("fusefs config: AttrTimeout %v is negative", c.AttrTimeout)
	}
	return nil
}

// Mount is a mounted weft file system. Its methods are safe for concurrent
// use.
type Mount struct {
	dir     string
	started time.Time
	srv     *fuse.Server
	fs      *filesys
	log     *slog.Logger
	done    chan struct{} // closed when the kernel has let go of the mount

	mu       sync.Mutex
	detached bool // unmounted, possibly lazily
}

// New mounts the file system at dir, which must be an existing directory
// that is not already a mount point (a dead weft mount, left by a daemon
// that was killed, is detached first), and returns once the kernel serves
// it. It mounts with mount(2) when the process may (root), else through
// fusermount3.
func New(ctx context.Context, dir string, cfg Config) (*Mount, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := clearDeadMount(dir, cfg.Logger); err != nil {
		return nil, err
	}
	if err := checkMountPoint(dir); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := time.Now()
	fsys := &filesys{cfg: cfg, log: cfg.Logger, started: now, inos: newInodes(), open: newOpenFiles()}
	zero, attr := time.Duration(0), cfg.AttrTimeout
	opts := &fs.Options{
		MountOptions: MountOptions(cfg.MaxWrite),
		// Names are never cached: the manager is the truth (see doc.go).
		EntryTimeout:    &zero,
		NegativeTimeout: &zero,
		AttrTimeout:     &attr,
		RootStableAttr:  &fs.StableAttr{Ino: inoRoot},
		Logger:          log.New(io.Discard, "", 0),
	}
	opts.MountOptions.Debug = cfg.Debug
	if cfg.Debug {
		opts.MountOptions.Logger = slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug)
	}
	srv, err := fs.Mount(dir, &rootDir{fs: fsys}, opts)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	m := &Mount{dir: dir, started: now, srv: srv, fs: fsys, log: cfg.Logger, done: make(chan struct{})}
	if err := RaiseReadahead(dir, cfg.MaxWrite); err != nil {
		cfg.Logger.Debug("fuse readahead left at the kernel default", "dir", dir, "err", err)
	}
	go func() {
		srv.Wait()
		close(m.done)
	}()
	return m, nil
}

// checkMountPoint refuses what cannot or should not be mounted on, with an
// error that says why.
func checkMountPoint(dir string) error {
	if !filepath.IsAbs(dir) {
		return badMountPoint(dir, "not an absolute path")
	}
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, syscall.ENOTCONN):
		return badMountPoint(dir, "a dead FUSE mount is left there (clear it with: fusermount3 -u "+dir+")")
	case errors.Is(err, os.ErrNotExist):
		return badMountPoint(dir, "no such directory (create it first)")
	case err != nil:
		return badMountPoint(dir, err.Error())
	case !st.IsDir():
		return badMountPoint(dir, "not a directory")
	}
	mounted, err := isMountPoint(dir)
	if err != nil {
		return badMountPoint(dir, err.Error())
	}
	if mounted {
		return badMountPoint(dir, "something is already mounted there (unmount it first)")
	}
	return nil
}

// mountPointError is a directory New refuses; it matches ErrMountPoint.
type mountPointError struct{ dir, why string }

func (e *mountPointError) Error() string        { return "mount point " + e.dir + ": " + e.why }
func (e *mountPointError) Is(target error) bool { return target == ErrMountPoint }

func badMountPoint(dir, why string) error { return &mountPointError{dir: dir, why: why} }

// clearDeadMount detaches the weft mount at dir if its daemon died without
// unmounting it (kill -9, a crash): the kernel then answers ENOTCONN for
// the directory, and mounting there again would fail. Only a dead mount of
// weft's own type is cleared; anything else is left for checkMountPoint to
// refuse.
func clearDeadMount(dir string, log *slog.Logger) error {
	// statfs always asks the file system; stat may be answered from the
	// root's cached attributes.
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); !errors.Is(err, syscall.ENOTCONN) && !errors.Is(err, syscall.ECONNABORTED) {
		return nil
	}
	if fstype, ok := mountType(dir); !ok || fstype != "fuse."+fsName {
		return nil
	}
	if err := detach(dir); err != nil {
		return badMountPoint(dir, "a dead weft mount is left there and could not be detached: "+err.Error())
	}
	log.Info("detached a dead weft mount its daemon left behind", "dir", dir)
	return nil
}

// isMountPoint reports whether dir is the root of a mount: it is "/", or
// its device differs from its parent's, or /proc/self/mountinfo lists it
// (a bind mount of the same device).
func isMountPoint(dir string) (bool, error) {
	dir = filepath.Clean(dir)
	if dir == "/" {
		return true, nil
	}
	var st, pst syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return false, err
	}
	if err := syscall.Stat(filepath.Dir(dir), &pst); err != nil {
		return false, err
	}
	if st.Dev != pst.Dev {
		return true, nil
	}
	// Without /proc, mountType finds nothing: the device check is all we
	// have.
	_, ok := mountType(dir)
	return ok, nil
}

// mountType returns the file system type of the topmost mount at dir, as
// /proc/self/mountinfo lists it, and whether there is one.
func mountType(dir string) (string, bool) {
	dir = filepath.Clean(dir)
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	var fstype string
	found := false
	for line := range strings.SplitSeq(string(b), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPEROPTIONS
		head, rest, ok := strings.Cut(line, " - ")
		f := strings.Fields(head)
		if !ok || len(f) < 5 || unescapeMountPath(f[4]) != dir {
			continue
		}
		if t := strings.Fields(rest); len(t) > 0 {
			fstype, found = t[0], true
		}
	}
	return fstype, found
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Dir returns the mount point.
func (m *Mount) Dir() string { return m.dir }

// Started returns when the mount was made.
func (m *Mount) Started() time.Time { return m.started }

// Done is closed when the kernel has let go of the mount: after Unmount,
// after the last open file of a lazy unmount is closed, or when someone
// unmounted the directory behind weft's back (umount, fusermount3 -u).
func (m *Mount) Done() <-chan struct{} { return m.done }

// Unmount unmounts the file system and waits until it stops serving. If a
// file in it is open it returns an error matching ErrBusy and the mount
// stays, unless lazy is set: then the directory is detached at once and
// the open files keep working until they are closed (Done tells when).
func (m *Mount) Unmount(lazy bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.done:
		m.detached = true
		return nil
	default:
	}
	if m.detached {
		return nil // lazily detached already
	}
	if lazy {
		if err := detach(m.dir); err != nil {
			return fmt.Errorf("unmount %s: %w", m.dir, err)
		}
		m.detached = true
		return nil
	}
	if err := syscall.Unmount(m.dir, 0); err != nil {
		if errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("unmount %s: %w: a file in it is open (a loop device, a process using it); close it or unmount lazily", m.dir, ErrBusy)
		}
		// Not allowed to umount(2): mounted through fusermount3.
		if err := m.srv.Unmount(); err != nil {
			if strings.Contains(err.Error(), "busy") {
				return fmt.Errorf("unmount %s: %w: a file in it is open (a loop device, a process using it); close it or unmount lazily", m.dir, ErrBusy)
			}
			return fmt.Errorf("unmount %s: %w", m.dir, err)
		}
	}
	m.detached = true
	<-m.done
	return nil
}

// detach unmounts dir lazily (MNT_DETACH), through fusermount3 -z when
// umount(2) is not allowed.
func detach(dir string) error {
	err := syscall.Unmount(dir, syscall.MNT_DETACH)
	if err == nil || !errors.Is(err, syscall.EPERM) {
		return err
	}
	out, ferr := exec.Command("fusermount3", "-u", "-z", dir).CombinedOutput()
	if ferr != nil {
		return fmt.Errorf("fusermount3 -u -z: %v: %s", ferr, strings.TrimSpace(string(out)))
	}
	return nil
}

// fsName names weft mounts: their type is fuse.weft.
const fsName = "weft"

// MountOptions are the kernel options of a weft mount whose requests carry
// up to maxWrite bytes (cmd/fuseceiling mounts with them too).
func MountOptions(maxWrite int) fuse.MountOptions {
	return fuse.MountOptions{
		FsName:        fsName,
		Name:          fsName,
		MaxWrite:      maxWrite,
		MaxReadAhead:  maxWrite,
		DirectMount:   true,
		DisableXAttrs: true,
		// The kernel sends the requests of an asynchronous O_DIRECT call
		// (libaio, io_uring: what QEMU's aio=native does) all at once,
		// instead of one after the other.
		ExtraCapabilities: fuse.CAP_ASYNC_DIO,
		// Replies are built from memory, never from a file descriptor:
		// go-fuse would otherwise try (and fail, for 1 MiB replies) to
		// splice every read reply through a pipe first.
		DisableSplice: true,
	}
}

// RaiseReadahead lets the kernel read ahead up to n bytes in the FUSE mount
// at dir. FUSE caps the readahead a server asks for at the 128 KiB default, which
// halves sequential reads through the page cache; the mount's
// backing-device setting in sysfs is not capped (writable by root).
func RaiseReadahead(dir string, n int) error {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return err
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	return os.WriteFile(p, []byte(strconv.Itoa(n>>10)), 0)
}
