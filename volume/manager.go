package volume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockmap"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/internal/atomicfile"
)

// Config configures a Manager.
type Config struct {
	Dir   string           // catalog and write overlays live here
	Store blockstore.Store // blocks and map nodes
	// Logger receives background-commit errors; nil discards them.
	Logger *slog.Logger
	// CommitInterval bounds how long a write stays uncommitted: a dirty
	// head is committed in the background once its oldest uncommitted
	// write is this old, or earlier once it has had no writes for
	// CommitQuiet. 0 disables background commits.
	CommitInterval time.Duration
	// CommitQuiet is how long a head must go without writes before it is
	// committed ahead of CommitInterval. Waiting for quiet keeps commits
	// (which hash and store) out of the way of bursts of I/O.
	CommitQuiet time.Duration
	// MapCacheNodes bounds the decoded block-map nodes kept in memory.
	MapCacheNodes int
	// BlockCacheBytes bounds the verified data blocks kept in memory for
	// reads; 0 disables the cache.
	BlockCacheBytes int64
	// Now is the clock for timestamps; nil means time.Now.
	Now func() time.Time
	// ExtraRoots, if set, returns more roots GC must keep: those of the
	// mesh's catalog, whose blocks this node holds for others.
	ExtraRoots func() []cid.Cid
	// PeerBlocks, if set, are blocks stored for other members that GC
	// keeps for a grace period though no root it knows reaches them.
	PeerBlocks *PeerBlocks
	// SyncFlush, if set, runs at the end of every flush of a disk in sync
	// mode, after the flush committed the disk at root; the flush fails
	// with its error. The mesh uses it to wait until R nodes hold root.
	SyncFlush func(ctx context.Context, disk string, root cid.Cid) error
	// FS holds the catalog and the overlays under Dir; nil is the OS's
	// (vfs.Default). Power-loss tests give a crashable in-memory one, or
	// one that fails chosen operations (see fs.go).
	FS vfs.FS
	// MinFreeBytes is the free space writes to the overlays leave on the
	// file system of Dir: past it they fail with ErrNoSpace. It is for the
	// block index, which a full device stops (see overlayFloor); 0 means
	// no floor.
	MinFreeBytes int64
}

// DefaultConfig returns a Config with everything but Dir and Store set.
func DefaultConfig() Config {
	return Config{
		CommitInterval:  30 * time.Second,
		CommitQuiet:     2 * time.Second,
		MapCacheNodes:   4096,
		BlockCacheBytes: 1 << 30,
		Now:             time.Now,
	}
}

// Validate reports whether the Config can be used.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return fmt.Errorf("volume config: Dir is empty")
	case c.Store == nil:
		return fmt.Errorf("volume config: Store is nil")
	case c.CommitInterval < 0:
		return fmt.Errorf("volume config: CommitInterval %v is negative", c.CommitInterval)
	case c.CommitQuiet < 0:
		return fmt.Errorf("volume config: CommitQuiet %v is negative", c.CommitQuiet)
	case c.MinFreeBytes < 0:
		return fmt.Errorf("volume config: MinFreeBytes %d is negative", c.MinFreeBytes)
	}
	return nil
}

// Manager owns this node's disks and replicas: their catalog, the heads'
// overlays, commits, clones, time travel and garbage collection. All
// methods are safe for concurrent use.
//
// Lock order: Head.commitMu, then gcMu, then mu, then Head.mu.
type Manager struct {
	cfg   Config
	fs    vfs.FS
	store blockstore.Store
	maps  *blockmap.Maps
	cache *blockCache
	log   *slog.Logger
	floor *overlayFloor // nil: no floor

	// gcMu is held for reading from the first block put of a commit until
	// its root is in the catalog, and for writing while a collection starts
	// a generation and snapshots the roots: no root can be missed.
	gcMu sync.RWMutex

	mu  sync.Mutex
	cat *catalog
	// unsaved holds the catalog of every save that failed since the last
	// one that succeeded: any of them may be the one on disk (see
	// saveCatalog).
	unsaved []*catalog
	heads   map[string]*Head
	pins    map[cid.Cid]int // roots held by open views
	used    map[cid.Cid]int64

	changed chan struct{} // see Changed

	watchMu        sync.Mutex
	accessWatchers []func(AccessChange) // see OnAccessChange

	stop chan struct{}
	wg   sync.WaitGroup
}

// Open loads the catalog in cfg.Dir and opens every disk head.
func Open(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// The directories are made durable here: the catalog's and overlays'
	// syncs cover their entries, not the directories holding them.
	if err := atomicfile.MkdirAllIn(cfg.fsOf(), filepath.Join(cfg.Dir, "heads"), 0o700); err != nil {
		return nil, fmt.Errorf("open volumes: %w", mapNoSpace(err))
	}
	cat, err := loadCatalog(cfg.fsOf(), cfg.Dir)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		cfg:   cfg,
		fs:    cfg.fsOf(),
		store: cfg.Store,
		maps:  blockmap.New(cfg.Store, cfg.MapCacheNodes),
		cache: newBlockCache(cfg.BlockCacheBytes),
		log:   cfg.Logger,
		cat:   cat,
		heads: map[string]*Head{},
		pins:  map[cid.Cid]int{},
		used:  map[cid.Cid]int64{},
		stop:  make(chan struct{}),
		floor: newOverlayFloor(cfg.fsOf(), cfg.Dir, cfg.MinFreeBytes),

		changed: make(chan struct{}, 1),
	}
	for name, rec := range cat.Disks {
		h, err := m.openHead(rec)
		if err != nil {
			m.closeHeads()
			return nil, err
		}
		m.heads[name] = h
	}
	if err := m.removeOrphanOverlays(); err != nil {
		m.closeHeads()
		return nil, err
	}
	if cfg.CommitInterval > 0 {
		m.wg.Add(1)
		go m.commitLoop()
	}
	return m, nil
}

func (m *Manager) headDir(id string) string { return filepath.Join(m.cfg.Dir, "heads", id) }

func (m *Manager) openHead(rec *diskRecord) (*Head, error) {
	root, err := parseRoot(rec.Root)
	if err != nil {
		return nil, fmt.Errorf("disk %q: %w", rec.Name, err)
	}
	ov, err := openOverlay(m.fs, m.headDir(rec.ID), rec.Size, rec.BlockSize)
	if err != nil {
		return nil, fmt.Errorf("disk %q: %w", rec.Name, err)
	}
	n := rec.Size / rec.BlockSize
	h := &Head{
		m: m, name: rec.Name, size: rec.Size, blockSize: rec.BlockSize, sync: rec.Sync,
		levels: blockmap.Levels(uint64(n)), root: root, ov: ov,
		dirty: newBitset(n), committing: newBitset(n), unpunched: newBitset(n),
	}
	for _, i := range ov.dirtyBlocks() {
		if i < n {
			h.dirty.set(i)
		}
	}
	if h.dirty.count() > 0 { // left dirty by the last run: commit it soon
		h.dirtySince = m.cfg.Now()
		h.lastWrite = h.dirtySince
	}
	// Clean blocks must read as zeros from the overlay (see prepareBlock);
	// a crash between a commit's bitmap write and its punch can leave
	// stale bytes behind, so punch every clean run now.
	var start int64
	for i := int64(0); i <= n; i++ {
		if i < n && !h.dirty.get(i) {
			continue
		}
		if err := ov.zeroBlocks(start, i-start); err != nil {
			ov.close()
			return nil, fmt.Errorf("disk %q: %w", rec.Name, err)
		}
		start = i + 1
	}
	return h, nil
}

// removeOrphanOverlays deletes overlay directories no disk refers to: left
// behind by a crash between a disk's removal from the catalog and the
// deletion of its overlay.
func (m *Manager) removeOrphanOverlays() error {
	entries, err := m.fs.List(filepath.Join(m.cfg.Dir, "heads"))
	if err != nil {
		return fmt.Errorf("open volumes: %w", err)
	}
	live := map[string]bool{}
	for _, rec := range m.cat.Disks {
		live[rec.ID] = true
	}
	for _, e := range entries {
		if !live[e] {
			if err := m.fs.RemoveAll(m.headDir(e)); err != nil {
				return fmt.Errorf("remove orphan overlay: %w", err)
			}
		}
	}
	return nil
}

func parseRoot(s string) (cid.Cid, error) {
	if s == "" {
		return cid.Undef, nil
	}
	c, err := cid.Decode(s)
	if err != nil {
		return cid.Undef, fmt.Errorf("root %q: %w", s, err)
	}
	return c, nil
}

// RootText is a root as the catalog file, the API and the logs print it:
// "" for cid.Undef (an empty disk).
func RootText(c cid.Cid) string {
	if !c.Defined() {
		return ""
	}
	return c.String()
}

// Close commits every dirty head, stops background work and closes the
// overlays. It does not close the block store, which the caller owns. A
// head that cannot commit for lack of space keeps its writes in its
// overlay, made durable here, and the next Open commits them: a full
// device is no reason to fail a shutdown.
func (m *Manager) Close() error {
	close(m.stop)
	m.wg.Wait()
	var errs []error
	for _, h := range m.headList() {
		_, err := m.Commit(context.Background(), h.name)
		if errors.Is(err, ErrNoSpace) {
			m.log.Warn("disk left uncommitted in its overlay: device full", "disk", h.name, "err", err)
			h.mu.RLock()
			err = h.persist()
			h.mu.RUnlock()
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
	}
	m.closeHeads()
	return errors.Join(errs...)
}

func (m *Manager) closeHeads() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, h := range m.heads {
		h.mu.Lock()
		h.ov.close()
		h.removed = true
		h.mu.Unlock()
	}
	m.heads = map[string]*Head{}
}

func (m *Manager) headList() []*Head {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Head, 0, len(m.heads))
	for _, h := range m.heads {
		out = append(out, h)
	}
	return out
}

func (m *Manager) commitLoop() {
	defer m.wg.Done()
	tick := m.cfg.CommitInterval
	if m.cfg.CommitQuiet > 0 {
		tick = min(tick, m.cfg.CommitQuiet)
	}
	t := time.NewTicker(min(tick, time.Second))
	defer t.Stop()
	full := fullHeads{}
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		m.backgroundCommits(m.cfg.Now(), full)
	}
}

// fullHeads are the heads whose background commits fail for lack of
// space: that is logged when it starts and when it ends, not at every
// tick. Keyed by head, so a disk removed and created again under its name
// starts afresh.
type fullHeads map[*Head]bool

// backgroundCommits commits the heads that are due and punches the quiet
// ones; full is updated, and pruned of the heads removed since.
func (m *Manager) backgroundCommits(now time.Time, full fullHeads) {
	heads := m.headList()
	live := make(map[*Head]bool, len(heads))
	for _, h := range heads {
		live[h] = true
	}
	for h := range full {
		if !live[h] {
			delete(full, h)
		}
	}
	for _, h := range heads {
		if !h.commitDue(now, m.cfg.CommitInterval, m.cfg.CommitQuiet) {
			if err := h.punchQuiet(now, m.cfg.CommitInterval); err != nil {
				m.log.Error("background punch failed", "disk", h.name, "err", err)
			}
			continue
		}
		_, err := m.Commit(context.Background(), h.name)
		switch {
		case errors.Is(err, ErrNoSpace):
			if !full[h] {
				full[h] = true
				m.log.Error("background commits fail, device full: the writes stay in the overlay", "disk", h.name, "err", err)
			}
			// The overlay copies of the last commit's blocks are
			// space the store needs now, whatever the head's writes.
			if perr := h.punchQuiet(now, 0); perr != nil {
				m.log.Error("background punch failed", "disk", h.name, "err", perr)
			}
		case err != nil && !errors.Is(err, ErrNotFound):
			m.log.Error("background commit failed", "disk", h.name, "err", err)
		case err == nil && full[h]:
			delete(full, h)
			m.log.Info("background commits resumed: space is back", "disk", h.name)
		}
	}
}

// Head returns the live head of a disk, for block I/O (NBD, FUSE, tests).
func (m *Manager) Head(name string) (*Head, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.heads[name]
	if !ok {
		return nil, fmt.Errorf("disk %q: %w", name, ErrNotFound)
	}
	return h, nil
}

func checkSpec(spec DiskSpec) (DiskSpec, error) {
	if err := ValidateName(spec.Name); err != nil {
		return spec, err
	}
	if err := ValidCreator(spec.Creator); err != nil {
		return spec, err
	}
	if spec.BlockSize == 0 {
		spec.BlockSize = DefaultBlockSize
	}
	if spec.Replicas == 0 {
		spec.Replicas = DefaultReplicas
	}
	bs := spec.BlockSize
	if bs < MinBlockSize || bs > MaxBlockSize || bs&(bs-1) != 0 {
		return spec, fmt.Errorf("block size %d: must be a power of two from 4K to 4M: %w", bs, ErrInvalid)
	}
	if spec.Replicas < 1 || spec.Replicas > MaxReplicas {
		return spec, fmt.Errorf("replicas %d: must be 1 to %d: %w", spec.Replicas, MaxReplicas, ErrInvalid)
	}
	if spec.Size <= 0 {
		return spec, fmt.Errorf("size %d: must be positive: %w", spec.Size, ErrInvalid)
	}
	const maxSize = 1 << 50 // 1 PiB: keeps block counts and bitmaps sane
	if spec.Size > maxSize {
		return spec, fmt.Errorf("size %d: larger than 1P: %w", spec.Size, ErrInvalid)
	}
	if spec.Size%bs != 0 {
		return spec, fmt.Errorf("size %d: not a whole number of %d-byte blocks (%d would be): %w",
			spec.Size, bs, roundUp(spec.Size, bs), ErrInvalid)
	}
	return spec, nil
}

// roundUp returns n rounded up to a multiple of bs.
func roundUp(n, bs int64) int64 { return (n + bs - 1) / bs * bs }

// CreateDisk creates an empty disk. Its size must be a multiple of the
// block size: a size that is not is refused, never rounded.
func (m *Manager) CreateDisk(ctx context.Context, spec DiskSpec) (DiskInfo, error) {
	return m.createDisk(ctx, spec, cid.Undef)
}

func (m *Manager) createDisk(ctx context.Context, spec DiskSpec, root cid.Cid) (DiskInfo, error) {
	spec, err := checkSpec(spec)
	if err != nil {
		return DiskInfo{}, err
	}
	if err := checkAccess(spec.Access); err != nil {
		return DiskInfo{}, err
	}
	m.mu.Lock()
	if _, ok := m.cat.Disks[spec.Name]; ok {
		m.mu.Unlock()
		return DiskInfo{}, fmt.Errorf("disk %q: %w", spec.Name, ErrExists)
	}
	if err := m.refuseNameLocked(KindDisk, spec.Name); err != nil {
		m.mu.Unlock()
		return DiskInfo{}, err
	}
	now := m.cfg.Now().UTC()
	rec := &diskRecord{
		ID: newID(), Name: spec.Name, Size: spec.Size, BlockSize: spec.BlockSize,
		Replicas: spec.Replicas, Sync: spec.Sync, Root: RootText(root), Created: now, Committed: now,
		Origin: spec.Origin, Creator: spec.Creator,
	}
	rec.setAccess(spec.Access)
	h, err := m.openHead(rec)
	if err != nil {
		m.mu.Unlock()
		return DiskInfo{}, err
	}
	m.cat.Disks[spec.Name] = rec
	if err := m.saveCatalog(); err != nil {
		delete(m.cat.Disks, spec.Name)
		m.mu.Unlock()
		h.ov.close()
		m.fs.RemoveAll(m.headDir(rec.ID))
		return DiskInfo{}, err
	}
	m.heads[spec.Name] = h
	m.mu.Unlock()
	info, err := m.DiskInfo(ctx, spec.Name)
	if err != nil {
		// The disk exists from here on, and a caller told it failed
		// would leave a head behind that takes writes (a take handed back
		// while its head kept what NBD clients wrote). Only the used bytes
		// are missing: counting them walks the map of a root held
		// elsewhere, which a cut-off peer or a cancelled request stops.
		return rec.info(root, 0), nil
	}
	return info, nil
}

// ListDisks describes every disk, sorted by name.
func (m *Manager) ListDisks(ctx context.Context) ([]DiskInfo, error) {
	m.mu.Lock()
	names := make([]string, 0, len(m.cat.Disks))
	for name := range m.cat.Disks {
		names = append(names, name)
	}
	m.mu.Unlock()
	sort.Strings(names)
	out := make([]DiskInfo, 0, len(names))
	for _, name := range names {
		info, err := m.DiskInfo(ctx, name)
		if errors.Is(err, ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// DiskInfo describes one disk.
func (m *Manager) DiskInfo(ctx context.Context, name string) (DiskInfo, error) {
	m.mu.Lock()
	rec, ok := m.cat.Disks[name]
	var info DiskInfo
	var h *Head
	var rootErr error
	if ok {
		var root cid.Cid
		root, rootErr = parseRoot(rec.Root)
		info = rec.info(root, len(m.cat.Replicas[name]))
		h = m.heads[name]
	}
	m.mu.Unlock()
	if !ok {
		return DiskInfo{}, fmt.Errorf("disk %q: %w", name, ErrNotFound)
	}
	if rootErr != nil {
		return DiskInfo{}, fmt.Errorf("disk %q: %w", name, rootErr)
	}
	blocks, err := m.countBlocks(ctx, info.Root)
	if err != nil {
		return DiskInfo{}, fmt.Errorf("disk %q: %w", name, err)
	}
	info.UsedBytes = blocks * info.BlockSize
	info.DirtyBytes = h.dirtyCount() * info.BlockSize
	h.mu.RLock()
	info.CommitError = h.commitErr
	h.mu.RUnlock()
	return info, nil
}

// info describes the disk of rec at root, with replicas replicas, from its
// record alone (no used or dirty bytes).
func (rec *diskRecord) info(root cid.Cid, replicas int) DiskInfo {
	return DiskInfo{
		Name: rec.Name, Size: rec.Size, BlockSize: rec.BlockSize, Replicas: rec.Replicas,
		Sync: rec.Sync, ReplicaCount: replicas, Root: root,
		Created: rec.Created, Committed: rec.Committed, Allow: slices.Clone(rec.Allow),
		Initiators: slices.Clone(rec.Initiators), CHAPUser: rec.CHAP.user(), CHAPTargetUser: rec.CHAP.targetUser(),
		CHAPMissing: rec.CHAPRequired && rec.CHAP == nil, Origin: rec.Origin, Creator: rec.Creator,
	}
}

// countBlocks returns the number of data blocks under root, remembering
// the answer: roots are immutable.
func (m *Manager) countBlocks(ctx context.Context, root cid.Cid) (int64, error) {
	if !root.Defined() {
		return 0, nil
	}
	m.mu.Lock()
	n, ok := m.used[root]
	m.mu.Unlock()
	if ok {
		return n, nil
	}
	count, err := m.maps.Count(ctx, root)
	if err != nil {
		return 0, err
	}
	m.mu.Lock()
	if len(m.used) > 10000 {
		clear(m.used)
	}
	m.used[root] = int64(count)
	m.mu.Unlock()
	return int64(count), nil
}

// RemoveDisk deletes a disk's head and its uncommitted writes. Its replicas
// stay: they are independent, and GC frees blocks no root reaches any more.
func (m *Manager) RemoveDisk(ctx context.Context, name string) error {
	h, err := m.Head(name)
	if err != nil {
		return err
	}
	h.commitMu.Lock()
	err = m.removeLocked(h)
	h.commitMu.Unlock()
	if err == nil {
		m.accessChanged(AccessChange{Disk: name, Removed: true})
	}
	return err
}

// RemoveDiskKeepingHead removes a disk as RemoveDisk does, but first keeps
// its head as a replica named removed-<time> (UTC), whose name it returns:
// writes are refused from the start (ErrReadOnly), so the replica holds
// every write that returned before the call. If the removal fails after
// the replica was recorded, the replica stays and the disk takes writes
// again.
func (m *Manager) RemoveDiskKeepingHead(ctx context.Context, name string) (string, error) {
	kept, err := m.removeSealed(ctx, name, func(cid.Cid) string {
		return "removed-" + m.cfg.Now().UTC().Format(replicaTimeFormat)
	})
	return kept.Name, err
}

// Kept is the replica a removal kept of its disk's head: its name ("" when
// none was kept) and its root.
type Kept struct {
	Name string
	Root cid.Cid
}

// GiveUpDisk removes a disk another node owns now, as RemoveDisk does,
// after committing its head under the same lock: unless the committed root
// is empty or handedOver (the root the new owner starts from), the head is
// kept first as a replica named base (base-2, base-3 … if taken), which
// it returns (no name when nothing was kept). Writes are refused from the
// start (ErrReadOnly), so every write that returned before the call is in
// handedOver or in the replica: none slips in between the commit and the
// removal. If the removal fails the disk takes writes again.
func (m *Manager) GiveUpDisk(ctx context.Context, name, base string, handedOver cid.Cid) (Kept, error) {
	if err := ValidateName(base); err != nil {
		return Kept{}, fmt.Errorf("give up disk %q: %w", name, err)
	}
	return m.removeSealed(ctx, name, func(root cid.Cid) string {
		if !root.Defined() || root.Equals(handedOver) {
			return ""
		}
		return base
	})
}

// removeSealed seals the head of disk name against writes, commits it,
// keeps the committed root as a replica named keep(root) (or a free
// variant of it; none when keep returns "") and removes the disk, all
// under the head's commit lock. It returns the kept replica.
func (m *Manager) removeSealed(ctx context.Context, name string, keep func(root cid.Cid) string) (Kept, error) {
	h, err := m.Head(name)
	if err != nil {
		return Kept{}, err
	}
	kept, err := m.removeSealedLocked(ctx, h, keep)
	if err == nil {
		m.accessChanged(AccessChange{Disk: name, Removed: true})
	}
	return kept, err
}

// removeSealedLocked is removeSealed of the head h under its commit lock.
func (m *Manager) removeSealedLocked(ctx context.Context, h *Head, keep func(root cid.Cid) string) (Kept, error) {
	name := h.name
	h.commitMu.Lock()
	defer h.commitMu.Unlock()
	h.mu.Lock()
	h.sealed = true
	h.mu.Unlock()
	var kept Kept
	err := m.commitLocked(ctx, h, func(root cid.Cid) error {
		base := keep(root)
		if base == "" {
			return nil
		}
		rec, err := m.addReplicaLocked(h, m.freeReplicaNameLocked(name, base), root)
		if err != nil {
			return err
		}
		kept = Kept{Name: rec.Name, Root: root}
		return nil
	})
	if err == nil {
		err = m.removeLocked(h)
	}
	if err != nil {
		h.mu.Lock()
		h.sealed = false
		h.mu.Unlock()
		return kept, err
	}
	return kept, nil
}

// removeLocked forgets h and deletes its overlay; the caller holds
// h.commitMu.
func (m *Manager) removeLocked(h *Head) error {
	name := h.name
	m.mu.Lock()
	rec, ok := m.cat.Disks[name]
	if !ok || m.heads[name] != h {
		m.mu.Unlock()
		return fmt.Errorf("disk %q: %w", name, ErrNotFound)
	}
	delete(m.cat.Disks, name)
	if err := m.saveCatalog(); err != nil {
		m.cat.Disks[name] = rec
		m.mu.Unlock()
		return err
	}
	delete(m.heads, name)
	m.mu.Unlock()
	h.mu.Lock()
	h.removed = true
	err := h.ov.close()
	h.mu.Unlock()
	return errors.Join(err, m.fs.RemoveAll(m.headDir(rec.ID)))
}

// Clone makes a new disk whose content is src's, in O(1): the new head
// starts at src's root and shares its blocks. A clone of a head commits the
// head first, so it includes every write that returned before the call.
// The new disk records src as its origin, and creator as its creator
// (DiskSpec.Creator).
func (m *Manager) Clone(ctx context.Context, src Ref, name, creator string) (DiskInfo, error) {
	if err := ValidCreator(creator); err != nil {
		return DiskInfo{}, err // before the commit of a head that pinRef makes
	}
	root, size, bs, replicas, release, err := m.pinRef(ctx, src)
	if err != nil {
		return DiskInfo{}, err
	}
	defer release()
	return m.createDisk(ctx, DiskSpec{Name: name, Size: size, BlockSize: bs, Replicas: replicas, Origin: src.String(), Creator: creator}, root)
}

// pinRef resolves a ref to a root and holds that root against GC until
// release is called.
func (m *Manager) pinRef(ctx context.Context, ref Ref) (root cid.Cid, size, bs int64, replicas int, release func(), err error) {
	if ref.Replica == "" {
		if _, err := m.Commit(ctx, ref.Disk); err != nil {
			return cid.Undef, 0, 0, 0, nil, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var rootStr string
	if ref.Replica == "" {
		rec, ok := m.cat.Disks[ref.Disk]
		if !ok {
			return cid.Undef, 0, 0, 0, nil, fmt.Errorf("disk %q: %w", ref.Disk, ErrNotFound)
		}
		rootStr, size, bs, replicas = rec.Root, rec.Size, rec.BlockSize, rec.Replicas
	} else {
		rep, err := m.cat.replica(ref.Disk, ref.Replica)
		if s, ok := m.cat.Spacesuits[ref.String()]; err != nil && ok {
			rep, err = &replicaRecord{Root: s.Root, Size: s.Size, BlockSize: s.BlockSize}, nil
		}
		if err != nil {
			return cid.Undef, 0, 0, 0, nil, m.refNotFoundLocked(ref, err)
		}
		rootStr, size, bs, replicas = rep.Root, rep.Size, rep.BlockSize, DefaultReplicas
		if rec, ok := m.cat.Disks[ref.Disk]; ok {
			replicas = rec.Replicas
		}
	}
	root, err = parseRoot(rootStr)
	if err != nil {
		return cid.Undef, 0, 0, 0, nil, err
	}
	m.pins[root]++
	var once sync.Once
	release = func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.pins[root]--; m.pins[root] <= 0 {
				delete(m.pins, root)
			}
		})
	}
	return root, size, bs, replicas, release, nil
}

// refNotFoundLocked says what is missing when neither a replica nor a
// spacesuit answers to ref: NAME@N with no disk NAME around names a
// spacesuit, anything else a replica (err, the replica lookup's error).
func (m *Manager) refNotFoundLocked(ref Ref, err error) error {
	_, disk := m.cat.Disks[ref.Disk]
	if name, v, perr := ParseSpacesuitRef(ref.String()); perr == nil && !disk && len(m.cat.Replicas[ref.Disk]) == 0 {
		return fmt.Errorf("spacesuit %s: %w", SpacesuitRef(name, v), ErrNotFound)
	}
	return err
}

// readCommitted copies block i of the map at root, from offset inBlock,
// into dst. Absent blocks read as zeros.
func (m *Manager) readCommitted(ctx context.Context, root cid.Cid, levels int, i, inBlock int64, dst []byte) error {
	return m.readCommittedBlocks(ctx, root, levels, []*blockRead{{index: i, inBlock: inBlock, dst: dst}})
}

func sortedReplicas(recs map[string]*replicaRecord) []*replicaRecord {
	out := make([]*replicaRecord, 0, len(recs))
	for _, r := range recs {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *replicaRecord) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}
