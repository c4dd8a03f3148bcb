package dockervol

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/internal/size"
	"github.com/weft-mesh/weft/node/blockfs"
)

// Disks is what the plugin asks of the weft daemon (api.Client has it).
type Disks interface {
	CreateDisk(ctx context.Context, spec api.DiskSpec) (api.DiskInfo, error)
	Clone(ctx context.Context, src api.Ref, name, creator string) (api.DiskInfo, error)
	RemoveDisk(ctx context.Context, name string) error
	DiskInfo(ctx context.Context, name string) (api.DiskInfo, error)
	ListDisks(ctx context.Context) ([]api.DiskInfo, error)
	// Mount asks the daemon for a FUSE mount of its disks at dir; an
	// existing one there fails with api.ErrExists.
	Mount(ctx context.Context, dir string) (api.MountInfo, error)
}

// Mounter puts a file system on a disk file at a directory and takes it
// off; blockfs.Attacher is one.
type Mounter interface {
	Mount(ctx context.Context, file, dir string, flags uintptr) (blockfs.Attachment, error)
	Unmount(ctx context.Context, file, dir string) error
	// Mounted reports whether something is mounted at dir.
	Mounted(dir string) (bool, error)
}

// mountTimeout bounds a volume's mount, mkfs of a new disk included.
const mountTimeout = 10 * time.Minute

// Config configures a Plugin.
type Config struct {
	// Dir holds the plugin's state: fuse/ (the daemon's FUSE mount),
	// volumes/<name> (the mounted volumes), mounts.json (who uses them).
	Dir string
	// DefaultSize is the size of a volume created without --opt size.
	DefaultSize int64
	Logger      *slog.Logger
}

// DefaultConfig returns a Config with a 10 GiB default size (thin: an
// unused byte costs nothing).
func DefaultConfig() Config {
	return Config{DefaultSize: 10 << 30, Logger: slog.Default()}
}

// Validate checks c.
func (c Config) Validate() error {
	if !filepath.IsAbs(c.Dir) {
		return fmt.Errorf("docker plugin: directory %q: want an absolute path", c.Dir)
	}
	if c.DefaultSize <= 0 {
		return fmt.Errorf("docker plugin: default size %d: want more than 0", c.DefaultSize)
	}
	return nil
}

// Plugin is the Driver of weft's volumes. Its calls run one at a time:
// Docker makes few, and a mount must not race an unmount of one volume.
type Plugin struct {
	cfg   Config
	disks Disks
	mnt   Mounter
	log   *slog.Logger

	mu   sync.Mutex
	refs *refs
}

// New returns a Plugin that keeps its state in cfg.Dir, reading back the
// mount references a previous run left there.
func New(cfg Config, disks Disks, mnt Mounter) (*Plugin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "volumes"), 0o700); err != nil {
		return nil, fmt.Errorf("docker plugin: %w", err)
	}
	r, err := loadRefs(filepath.Join(cfg.Dir, "mounts.json"))
	if err != nil {
		return nil, fmt.Errorf("docker plugin: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	p := &Plugin{cfg: cfg, disks: disks, mnt: mnt, log: log, refs: r}
	for _, v := range r.mounted() {
		p.log.Info("volume in use from before", "volume", v, "mounts", len(r.users(v)))
	}
	return p, nil
}

// Recover makes the mount references and the mounts agree again after
// the plugin, or the machine, restarted: a volume with references but no
// mount (the machine rebooted, which stopped its containers) loses them,
// since nothing can use a mount that is not there; a volume's directory
// mounted with no reference left (the plugin died between forgetting the
// last user and unmounting) is unmounted. Call it before serving.
func (p *Plugin) Recover(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, v := range p.refs.mounted() {
		mounted, err := p.mnt.Mounted(p.volumeDir(v))
		if err != nil {
			return fmt.Errorf("docker plugin: recover %s: %w", v, err)
		}
		if mounted {
			continue
		}
		for _, id := range p.refs.users(v) {
			if err := p.refs.drop(v, id); err != nil {
				return fmt.Errorf("docker plugin: recover %s: %w", v, err)
			}
		}
		p.log.Warn("volume had users but is not mounted (a reboot?): forgot them", "volume", v)
	}
	entries, err := os.ReadDir(filepath.Join(p.cfg.Dir, "volumes"))
	if err != nil {
		return fmt.Errorf("docker plugin: recover: %w", err)
	}
	for _, e := range entries {
		v := e.Name()
		if len(p.refs.users(v)) > 0 {
			continue
		}
		mounted, err := p.mnt.Mounted(p.volumeDir(v))
		if err != nil {
			return fmt.Errorf("docker plugin: recover %s: %w", v, err)
		}
		if !mounted {
			continue
		}
		if err := p.mnt.Unmount(ctx, p.diskFile(v), p.volumeDir(v)); errors.Is(err, blockfs.ErrBusy) || errors.Is(err, blockfs.ErrNotWritten) {
			// Someone works in it (a shell, a backup), or its disk
			// refuses writes: one such volume must not keep the plugin
			// from serving the others, or put it in a restart loop.
			// The next Unmount or start retries.
			p.log.Warn("volume mounted with no user could not be unmounted: left mounted", "volume", v, "err", err)
			continue
		} else if err != nil {
			return fmt.Errorf("docker plugin: recover %s: unmount it, no container uses it: %w", v, err)
		}
		p.log.Warn("volume was mounted with no user: unmounted it", "volume", v)
	}
	return nil
}

func (p *Plugin) fuseDir() string              { return filepath.Join(p.cfg.Dir, "fuse") }
func (p *Plugin) volumeDir(name string) string { return filepath.Join(p.cfg.Dir, "volumes", name) }
func (p *Plugin) diskFile(name string) string  { return filepath.Join(p.fuseDir(), name+".img") }

// createOptions are the --opt of docker volume create.
type createOptions struct {
	size      int64
	blockSize int64
	replicas  int
	sync      bool
	from      string
}

// optionNames lists the options Create takes, for its error messages.
const optionNames = "size, block-size, replicas, sync, from"

func parseCreateOptions(opts map[string]string) (createOptions, error) {
	var o createOptions
	for k, v := range opts {
		var err error
		switch k {
		case "size":
			o.size, err = size.Parse(v)
		case "block-size", "blocksize":
			o.blockSize, err = size.Parse(v)
		case "replicas":
			o.replicas, err = strconv.Atoi(v)
			if err == nil && (o.replicas < 1 || o.replicas > api.MaxReplicas) {
				err = fmt.Errorf("want 1 to %d", api.MaxReplicas)
			}
		case "sync":
			o.sync, err = strconv.ParseBool(v)
		case "from":
			if _, err = api.ParseRef(v); err == nil {
				o.from = v
			}
		default:
			return o, fmt.Errorf("unknown option %q (weft takes %s)", k, optionNames)
		}
		if err != nil {
			return o, fmt.Errorf("option %s=%q: %v", k, v, err)
		}
	}
	if o.from != "" && (o.size != 0 || o.blockSize != 0 || o.replicas != 0 || o.sync) {
		return o, fmt.Errorf("option from=%s: a clone takes its size, block size and replicas from its source; leave the other options out", o.from)
	}
	return o, nil
}

// Create makes the volume's disk: empty, or with from=SPACESUIT@VERSION,
// DISK@REPLICA or DISK, an O(1) clone, and records it as the plugin's.
// A disk the plugin made is taken as it is when no option asks for
// something else (Docker repeats a create); a disk it did not make is
// never adopted: its other users (weft mount, NBD clients) would race the
// container's ext4.
func (p *Plugin) Create(ctx context.Context, name string, opts map[string]string) error {
	o, err := parseCreateOptions(opts)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.disks.DiskInfo(ctx, name); err == nil {
		if !p.refs.owns(name) {
			return fmt.Errorf("weft disk %q exists and was not made by the Docker plugin; it will not use it (it could get a second writer): choose another volume name, or clone it with --opt from=%s", name, name)
		}
		if len(opts) == 0 {
			return nil
		}
		return fmt.Errorf("weft disk %q exists already; create the volume without options to use it", name)
	} else if !errors.Is(err, api.ErrNotFound) {
		return err
	}
	if o.from != "" {
		src, _ := api.ParseRef(o.from)
		if _, err := p.disks.Clone(ctx, src, name, ""); err != nil {
			return fmt.Errorf("clone %s to %s: %w", o.from, name, err)
		}
		p.log.Info("volume cloned", "volume", name, "from", o.from)
		return p.recordMade(name)
	}
	spec := api.DiskSpec{Name: name, Size: o.size, BlockSize: o.blockSize, Replicas: o.replicas, Sync: o.sync}
	if spec.Size == 0 {
		spec.Size = p.cfg.DefaultSize
	}
	if _, err := p.disks.CreateDisk(ctx, spec); err != nil {
		return fmt.Errorf("create disk %s: %w", name, err)
	}
	p.log.Info("volume created", "volume", name, "size", spec.Size)
	return p.recordMade(name)
}

// recordMade records a disk the plugin just made. It is recorded after
// the disk exists: a plugin that dies in between leaves a disk it will not
// adopt (safe), never a record that would adopt someone else's disk.
func (p *Plugin) recordMade(name string) error {
	if err := p.refs.setOwned(name, true); err != nil {
		return fmt.Errorf("volume %s: the disk was made but %w", name, err)
	}
	return nil
}

// errNotOurs answers a call about a disk the plugin did not make.
func errNotOurs(name string) error {
	return fmt.Errorf("volume %s: %w (no weft disk of that name made by the Docker plugin)", name, api.ErrNotFound)
}

// Remove removes the volume's disk, unless a container has it mounted
// (the daemon also refuses a disk that anything else uses). A disk that
// is gone already is success: Docker would otherwise keep a volume it can
// never remove.
func (p *Plugin) Remove(ctx context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ids := p.refs.users(name); len(ids) > 0 {
		return fmt.Errorf("volume %s is in use: mounted for %d container(s) (mount IDs %s); stop them first", name, len(ids), strings.Join(ids, ", "))
	}
	if !p.refs.owns(name) {
		if _, err := p.disks.DiskInfo(ctx, name); err == nil {
			return fmt.Errorf("volume %s: the weft disk of that name was not made by the Docker plugin; it will not remove it (weft disk rm does)", name)
		} else if !errors.Is(err, api.ErrNotFound) {
			return fmt.Errorf("remove volume %s: %w", name, err)
		}
		p.log.Info("volume removed: its disk was gone already", "volume", name)
		return nil
	}
	if err := p.disks.RemoveDisk(ctx, name); errors.Is(err, api.ErrNotFound) {
		p.log.Info("volume removed: its disk was gone already", "volume", name)
	} else if err != nil {
		return fmt.Errorf("remove disk %s: %w", name, err)
	}
	if err := p.refs.setOwned(name, false); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	if err := os.Remove(p.volumeDir(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		p.log.Warn("remove volume directory", "volume", name, "err", err)
	}
	p.log.Info("volume removed", "volume", name)
	return nil
}

// Mount mounts the volume for mount ID id and returns its directory. The
// reference is saved before the mount is made, so that a plugin that
// dies in between still knows the volume may be mounted.
func (p *Plugin) Mount(ctx context.Context, name, id string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.refs.owns(name) {
		return "", fmt.Errorf("mount: %w", errNotOurs(name))
	}
	if _, err := p.disks.DiskInfo(ctx, name); err != nil {
		return "", fmt.Errorf("mount volume %s: %w", name, err)
	}
	if _, err := p.refs.add(name, id); err != nil {
		return "", err
	}
	dir := p.volumeDir(name)
	// Not the request's context: dockerd gives up on a slow call (and
	// cancels it) while mkfs of a large disk runs; killing mkfs half way
	// leaves a disk with half a file system that the next try refuses to
	// format. The mount runs to its own bound instead.
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), mountTimeout)
	defer cancel()
	err := p.ensureFUSE(mctx)
	if err == nil {
		var at blockfs.Attachment
		at, err = p.mnt.Mount(mctx, p.diskFile(name), dir, 0)
		if err == nil && at.Formatted {
			p.log.Info("made a file system", "volume", name, "type", at.FSType)
		}
	}
	if err != nil {
		if derr := p.refs.drop(name, id); derr != nil {
			p.log.Error("forget a failed mount", "volume", name, "id", id, "err", derr)
		}
		return "", fmt.Errorf("mount volume %s: %w", name, err)
	}
	p.log.Info("volume mounted", "volume", name, "id", id, "users", len(p.refs.users(name)))
	return dir, nil
}

// Unmount drops mount ID id from the volume; the last one unmounts it
// first. An unmount that fails (busy, or writes that did not reach the
// disk) keeps id's reference and returns the error: the container may
// still use the mount, and Docker's retry, or a restarted plugin, must
// still count it rather than forget a volume that stays mounted. One that
// fails yet took the mount down (its disk file was dead: the writes not
// synced are lost, and it was detached) drops it, and returns the error.
func (p *Plugin) Unmount(ctx context.Context, name, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refs.lastUser(name, id) {
		dir := p.volumeDir(name)
		if err := p.mnt.Unmount(ctx, p.diskFile(name), dir); err != nil {
			err = fmt.Errorf("unmount volume %s: %w", name, err)
			if mounted, merr := p.mnt.Mounted(dir); merr != nil || mounted {
				return err
			}
			return errors.Join(err, p.refs.drop(name, id))
		}
	}
	// Unmounted and then the plugin dies before the drop is saved: the
	// reference outlives the mount, and Recover drops it at start.
	if err := p.refs.drop(name, id); err != nil {
		return err
	}
	if users := len(p.refs.users(name)); users > 0 {
		p.log.Info("volume still in use", "volume", name, "id", id, "users", users)
		return nil
	}
	p.log.Info("volume unmounted", "volume", name, "id", id)
	return nil
}

// Path returns the volume's directory while it is mounted.
func (p *Plugin) Path(ctx context.Context, name string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.refs.users(name)) == 0 {
		return "", nil
	}
	return p.volumeDir(name), nil
}

// Get describes the volume's disk, if the plugin made it.
func (p *Plugin) Get(ctx context.Context, name string) (Volume, error) {
	p.mu.Lock()
	owned := p.refs.owns(name)
	p.mu.Unlock()
	if !owned {
		return Volume{}, errNotOurs(name)
	}
	info, err := p.disks.DiskInfo(ctx, name)
	if err != nil {
		return Volume{}, fmt.Errorf("volume %s: %w", name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.volume(info), nil
}

// List describes the disks the plugin made that the daemon still has.
func (p *Plugin) List(ctx context.Context) ([]Volume, error) {
	infos, err := p.disks.ListDisks(ctx)
	if err != nil {
		return nil, fmt.Errorf("list disks: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Volume, 0, len(infos))
	for _, info := range infos {
		if p.refs.owns(info.Name) {
			out = append(out, p.volume(info))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// volume describes a disk as a volume; p.mu is held.
func (p *Plugin) volume(info api.DiskInfo) Volume {
	v := Volume{Name: info.Name, Status: map[string]any{
		"size":       size.Format(info.Size),
		"block_size": size.Format(info.BlockSize),
		"replicas":   info.Replicas,
		"used":       size.Format(info.UsedBytes),
		"mounts":     len(p.refs.users(info.Name)),
	}}
	if info.Owner != "" {
		v.Status["owner"] = info.Owner
	}
	if len(p.refs.users(info.Name)) > 0 {
		v.Mountpoint = p.volumeDir(info.Name)
	}
	return v
}

// ensureFUSE makes sure the daemon serves its disks at fuseDir: a mount
// left by a daemon that died (its directory answers ENOTCONN) is detached
// first.
func (p *Plugin) ensureFUSE(ctx context.Context) error {
	dir := p.fuseDir()
	if _, err := os.Stat(dir); isDeadMount(err) {
		p.log.Warn("FUSE mount of a gone daemon: detaching it", "dir", dir)
		if err := detachDead(dir); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("FUSE mount %s: %w", dir, err)
	}
	if live, err := blockfs.IsMountPoint(dir); err != nil {
		return err
	} else if live {
		return nil // the daemon's: only it mounts there, and a dead one was detached above
	}
	if _, err := p.disks.Mount(ctx, dir); err != nil && !errors.Is(err, api.ErrExists) {
		return fmt.Errorf("FUSE mount %s: %w", dir, err)
	}
	return nil
}
