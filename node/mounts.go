package node

import (
	"context"
	"errors"
	"fmt"
	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/internal/errkind"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"

	"github.com/weft-mesh/weft/cluster"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/node/fusefs"
	"github.com/weft-mesh/weft/volume"
)

// codeBusy is the error code of an unmount refused because a file in the
// mount is open.
const codeBusy = api.CodeBusy

// MountRequest is api.MountRequest.
type MountRequest = api.MountRequest

// MountInfo is api.MountInfo.
type MountInfo = api.MountInfo

// mountTable holds the daemon's FUSE mounts, by directory. The daemon owns
// them because it owns the disk heads they serve. Safe for concurrent use.
type mountTable struct {
	vols   *volume.Manager
	remote fusefs.RemoteDisks // nil without a mesh
	loops  loopDevices
	log    *slog.Logger

	mu    sync.Mutex
	byDir map[string]*mountEntry
	// serving holds every mount until the kernel lets go of it: those in
	// byDir and those detached lazily whose files are still open.
	serving map[*mountEntry]struct{}
	closed  bool
}

type mountEntry struct {
	m    *fusefs.Mount
	gone chan struct{} // closed when the entry leaves the table
}

func newMountTable(vols *volume.Manager, mn *meshNode, log *slog.Logger) *mountTable {
	t := &mountTable{
		vols: vols, loops: loopDevices{sysBlock: "/sys/block"}, log: log,
		byDir: map[string]*mountEntry{}, serving: map[*mountEntry]struct{}{},
	}
	if mn != nil {
		t.remote = fuseRemote{mn}
	}
	return t
}

// resolveDir returns the absolute, symlink-free form of dir. Only the
// parent is resolved, so that a mount point that does not answer (busy,
// dead) is never stat'ed.
func resolveDir(dir string) (string, error) {
	if !filepath.IsAbs(dir) {
		return "", invalidf("mount point %q: want an absolute path", dir)
	}
	dir = filepath.Clean(dir)
	if dir == "/" {
		return dir, nil
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(dir))
	if err != nil {
		return "", invalidf("mount point %s: %v", dir, err)
	}
	full := filepath.Join(parent, filepath.Base(dir))
	if fi, err := os.Lstat(full); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if target, err := filepath.EvalSymlinks(full); err == nil {
			return target, nil
		}
	}
	return full, nil
}

// mount mounts the node's disks at dir.
func (t *mountTable) mount(ctx context.Context, dir string) (MountInfo, error) {
	dir, err := resolveDir(dir)
	if err != nil {
		return MountInfo{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return MountInfo{}, errors.New("daemon is stopping")
	}
	if _, ok := t.byDir[dir]; ok {
		return MountInfo{}, errkind.Errorf(volume.ErrExists, "mount point %s: weft is mounted there already", dir)
	}
	cfg := fusefs.DefaultConfig()
	cfg.Volumes, cfg.Remote = t.vols, t.remote
	cfg.Logger = t.log
	m, err := fusefs.New(ctx, dir, cfg)
	if err != nil {
		return MountInfo{}, err
	}
	e := &mountEntry{m: m, gone: make(chan struct{})}
	t.byDir[dir] = e
	t.serving[e] = struct{}{}
	go t.watch(e)
	t.log.Info("mounted", "dir", dir)
	return MountInfo{Dir: dir, Started: m.Started()}, nil
}

// watch drops an entry whose mount the kernel let go of, such as one
// unmounted behind weft's back.
func (t *mountTable) watch(e *mountEntry) {
	<-e.m.Done()
	t.mu.Lock()
	delete(t.serving, e)
	t.mu.Unlock()
	if t.drop(e) {
		t.log.Warn("unmounted outside weft", "dir", e.m.Dir())
	}
}

// drop removes e from the table; it reports whether e was still there.
func (t *mountTable) drop(e *mountEntry) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byDir[e.m.Dir()] != e {
		return false
	}
	delete(t.byDir, e.m.Dir())
	close(e.gone)
	return true
}

func (t *mountTable) lookup(dir string) (*mountEntry, error) {
	t.mu.Lock()
	e, ok := t.byDir[filepath.Clean(dir)]
	t.mu.Unlock()
	if ok {
		return e, nil
	}
	full, err := resolveDir(dir)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	e, ok = t.byDir[full]
	t.mu.Unlock()
	if !ok {
		return nil, errkind.Errorf(volume.ErrNotFound, "%s: weft is not mounted there", dir)
	}
	return e, nil
}

// unmount unmounts the mount at dir. A busy mount stays, with an error
// matching fusefs.ErrBusy, unless lazy is set.
func (t *mountTable) unmount(dir string, lazy bool) error {
	e, err := t.lookup(dir)
	if err != nil {
		return err
	}
	if err := e.m.Unmount(lazy); err != nil {
		return err
	}
	t.drop(e)
	t.log.Info("unmounted", "dir", e.m.Dir(), "lazy", lazy)
	return nil
}

// list describes the mounts, sorted by directory.
func (t *mountTable) list() []MountInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]MountInfo, 0, len(t.byDir))
	for dir, e := range t.byDir {
		out = append(out, MountInfo{Dir: dir, Started: e.m.Started()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dir < out[j].Dir })
	return out
}

// diskUsers names the loop devices on the disk's file in every mount, and
// the file's other open handles (a loop device holds one), in the mounts
// detached lazily too.
func (t *mountTable) diskUsers(disk string) []string {
	loops := t.loops.byBackingFile()
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for e := range t.serving {
		path := e.m.DiskPath(disk)
		for _, dev := range loops[path] {
			out = append(out, fmt.Sprintf("loop device %s (%s)", dev, path))
		}
		switch n := e.m.DiskHandles(disk) - len(loops[path]); {
		case n == 1:
			out = append(out, "open file "+path)
		case n > 1:
			out = append(out, fmt.Sprintf("open file %s (%d handles)", path, n))
		}
	}
	sort.Strings(out)
	return out
}

// dropRemoved makes the open files of a removed disk fail at once in every
// mount, instead of serving pages the kernel cached.
func (t *mountTable) dropRemoved(disk string) {
	t.mu.Lock()
	entries := make([]*mountEntry, 0, len(t.serving))
	for e := range t.serving {
		entries = append(entries, e)
	}
	t.mu.Unlock()
	for _, e := range entries {
		e.m.DropRemovedDisk(disk)
	}
}

// closeAll unmounts everything and refuses new mounts; a busy mount is
// detached lazily, its open files fail once the volumes close. It is
// called when the daemon stops and is idempotent.
func (t *mountTable) closeAll() {
	t.mu.Lock()
	t.closed = true
	entries := make([]*mountEntry, 0, len(t.byDir))
	for _, e := range t.byDir {
		entries = append(entries, e)
	}
	t.mu.Unlock()
	for _, e := range entries {
		err := e.m.Unmount(false)
		if errors.Is(err, fusefs.ErrBusy) {
			t.log.Warn("mount busy at shutdown: detaching it lazily", "dir", e.m.Dir())
			err = e.m.Unmount(true)
		}
		if err != nil {
			t.log.Error("unmount at shutdown", "dir", e.m.Dir(), "err", err)
			continue
		}
		t.drop(e)
		t.log.Info("unmounted", "dir", e.m.Dir())
	}
}

func (s *server) handleMount(w http.ResponseWriter, r *http.Request) {
	var req MountRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	info, err := s.mounts.mount(r.Context(), req.Dir)
	if errors.Is(err, fusefs.ErrMountPoint) {
		s.writeError(w, r, err, http.StatusBadRequest, codeInvalid)
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusCreated, info)
}

func (s *server) handleListMounts(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, http.StatusOK, s.mounts.list())
}

func (s *server) handleUnmount(w http.ResponseWriter, r *http.Request) {
	lazy, err := queryBool(r, "lazy")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.mounts.unmount(r.URL.Query().Get("dir"), lazy); err != nil {
		if errors.Is(err, fusefs.ErrBusy) {
			s.writeError(w, r, err, http.StatusConflict, codeBusy)
			return
		}
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleWaitMount answers when the mount at ?dir= is gone: unmounted by
// anyone, or by the daemon stopping. `weft mount` in the foreground waits
// on it.
func (s *server) handleWaitMount(w http.ResponseWriter, r *http.Request) {
	e, err := s.mounts.lookup(r.URL.Query().Get("dir"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	select {
	case <-e.gone:
		w.WriteHeader(http.StatusNoContent)
	case <-r.Context().Done():
	}
}

func queryBool(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, invalidf("query %s=%q: want true or false", name, v)
	}
	return b, nil
}

// fuseRemote shows a FUSE mount the disks other nodes own, from the mesh's
// catalog.
type fuseRemote struct{ n *meshNode }

// RemoteDisks lists the catalog's disks with no head here, from their
// records alone (no block-map walk for used bytes).
func (r fuseRemote) RemoteDisks(ctx context.Context) []volume.DiskInfo {
	var out []volume.DiskInfo
	for _, e := range r.n.cl.List(catalog.DiskPrefix) {
		if info := cluster.CatalogDiskInfo(e); !r.local(info.Name) {
			out = append(out, info)
		}
	}
	return out
}

func (r fuseRemote) RemoteDisk(ctx context.Context, name string) (volume.DiskInfo, bool) {
	e, ok := r.n.cat.Get(catalog.DiskKey(name))
	if !ok || r.local(name) {
		return volume.DiskInfo{}, false
	}
	return cluster.CatalogDiskInfo(e), true
}

func (r fuseRemote) OpenRemoteDisk(ctx context.Context, name string) (*volume.View, error) {
	return r.n.cl.Open(ctx, volume.Ref{Disk: name})
}

// local reports whether the disk has a head on this node.
func (r fuseRemote) local(name string) bool {
	_, err := r.n.vols.Head(name)
	return err == nil
}
