package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/heal"
	"github.com/weft-mesh/weft/internal/clock"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/placement"
	"github.com/weft-mesh/weft/volume"
)

// Volumes is what the cluster layer asks of the node's volumes; a
// *volume.Manager satisfies it.
type Volumes interface {
	Records() []volume.Record
	// Changed is signalled after a local record changed.
	Changed() <-chan struct{}
	Commit(ctx context.Context, disk string) (volume.DiskInfo, error)
	CreateDiskAt(ctx context.Context, spec volume.DiskSpec, root cid.Cid) (volume.DiskInfo, error)
	// CarryAccess gives a disk held here the rules its record carries.
	CarryAccess(ctx context.Context, disk string, a volume.Access) (volume.DiskInfo, error)
	AddReplica(ctx context.Context, r volume.ReplicaInfo, root cid.Cid) error
	// GiveUpDisk commits a disk's head and removes it, keeping it first
	// as a replica named base unless its root is empty or handedOver,
	// with no write slipping in between (volume.Manager.GiveUpDisk).
	GiveUpDisk(ctx context.Context, disk, base string, handedOver cid.Cid) (volume.Kept, error)
	RemoveReplica(ctx context.Context, disk, name string) error
	RemoveSpacesuit(ctx context.Context, name string, version uint64) error
}

// Views is how the cluster opens and measures what the volumes hold or
// the catalog names; a *volume.Manager satisfies it.
type Views interface {
	OpenView(ctx context.Context, ref volume.Ref) (*volume.View, error)
	OpenRootView(label string, root cid.Cid, size, blockSize int64) (*volume.View, error)
	DiskInfo(ctx context.Context, name string) (volume.DiskInfo, error)
	RootBytes(ctx context.Context, root cid.Cid, blockSize int64) (int64, error)
}

// Pusher copies a root's blocks, those new since prev, to its placement
// sets of r members; a *heal.Pusher satisfies it.
type Pusher interface {
	Push(ctx context.Context, prev, root cid.Cid, r int) (heal.PushStats, error)
}

// Config configures a Cluster. Net, Catalog and Pusher are required.
type Config struct {
	Net     meshnet.Network
	Catalog *catalog.Catalog
	// CatalogPath is where the catalog is saved; "" keeps it in memory.
	CatalogPath string
	// Site is this node's failure domain.
	Site   string
	Pusher Pusher
	// Clock is the time source; nil is the wall clock.
	Clock  clock.Clock
	Logger *slog.Logger
	// ReconcileEvery bounds how stale the catalog's view of this node's
	// records gets when no change wakes the reconcile loop.
	ReconcileEvery time.Duration
	// AnnounceTimeout bounds how long a command waits for the other
	// members to confirm its catalog records.
	AnnounceTimeout time.Duration
	// CatalogSettle bounds how long a command naming a record waits for
	// it to arrive (AwaitEntry).
	CatalogSettle time.Duration
	// LocalRoots lists the roots held here in part (transfers under way),
	// which the catalog may not name; nil is none.
	LocalRoots func() []cid.Cid
}

// DefaultConfig returns the timings a daemon uses; the caller sets the rest.
func DefaultConfig() Config {
	return Config{ReconcileEvery: 5 * time.Second, AnnounceTimeout: 5 * time.Second, CatalogSettle: 3 * time.Second}
}

// Cluster is the mesh half of a node: the membership view, the replicated
// catalog and this node's part in it (publishing its records, owning,
// handing over and giving up disks, replicating their roots). It runs over
// any meshnet.Network.
type Cluster struct {
	net     meshnet.Network
	cat     *catalog.Catalog
	catPath string
	self    meshnet.PeerID
	selfStr string // base58, as the catalog names peers
	site    string
	pusher  Pusher
	clock   clock.Clock
	log     *slog.Logger
	cfg     Config

	// life ends when the node stops: background work that a request
	// starts (a replication push after a commit) outlives the request,
	// not the node. It, vols and views are set by Attach.
	life  context.Context
	vols  Volumes
	views Views

	reconcileMu sync.Mutex // one reconcile at a time (see reconcile)

	mu     sync.Mutex
	pushed map[string]cid.Cid // disk → last root its placement sets confirmed
	// tried is, per disk, the last root an async push attempted and left
	// to heal when it failed: not pushed again at every reconcile, and
	// never the base of a later push, which sends only blocks new since
	// its base (a sync flush on top of it would skip the unconfirmed ones).
	tried   map[string]cid.Cid
	pushing map[string]bool
	// tombSeen is, per key whose catalog version is a tombstone, when
	// this node first saw it (View.TombSeen): the tombstones the catalog
	// held when the cluster started count as seen then.
	tombSeen map[string]time.Time
	dirty    bool // the catalog changed since it was saved

	wake chan struct{}

	pushes catalogPushes // bounds on the catalog pushes served
}

// New returns the cluster layer of the node Net names. It starts nothing:
// Attach gives it the volumes and Run its loops.
func New(cfg Config) (*Cluster, error) {
	var errs []error
	if cfg.Net == nil {
		errs = append(errs, errors.New("no network"))
	}
	if cfg.Catalog == nil {
		errs = append(errs, errors.New("no catalog"))
	}
	if cfg.Pusher == nil {
		errs = append(errs, errors.New("no pusher"))
	}
	if cfg.ReconcileEvery <= 0 || cfg.AnnounceTimeout <= 0 || cfg.CatalogSettle <= 0 {
		errs = append(errs, errors.New("reconcile, announce and settle periods must be positive (start from DefaultConfig)"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("cluster config: %w", err)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	if cfg.LocalRoots == nil {
		cfg.LocalRoots = func() []cid.Cid { return nil }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	self := cfg.Net.Self()
	c := &Cluster{
		net: cfg.Net, cat: cfg.Catalog, catPath: cfg.CatalogPath, self: self, selfStr: self.String(),
		site: cfg.Site, pusher: cfg.Pusher, clock: cfg.Clock, log: cfg.Logger, cfg: cfg,
		life:   context.Background(),
		pushed: map[string]cid.Cid{}, tried: map[string]cid.Cid{}, pushing: map[string]bool{},
		tombSeen: map[string]time.Time{},
		wake:     make(chan struct{}, 1),
		pushes:   newCatalogPushes(),
	}
	c.cat.OnChange(func(_, e catalog.Entry, _ bool) {
		now := c.clock.Now()
		c.mu.Lock()
		c.dirty = true
		c.seeLocked(e, now)
		c.forgetPushesLocked(e)
		c.mu.Unlock()
		c.Poke()
	})
	now := c.clock.Now()
	for _, e := range c.cat.Snapshot() {
		c.seeLocked(e, now)
	}
	c.net.OnMembershipChange(c.Poke)
	c.net.Handle(CatalogProtocol, c.serveCatalogPush)
	c.net.Handle(CatalogGetProtocol, c.serveCatalogGet)
	return c, nil
}

// seeLocked notes when this node first saw e, a key's new catalog version:
// the first time of a tombstone is kept until the key is live again. Call
// it with c.mu held (or before the cluster is shared).
func (c *Cluster) seeLocked(e catalog.Entry, now time.Time) {
	if !e.Deleted {
		delete(c.tombSeen, e.Key)
		return
	}
	if _, ok := c.tombSeen[e.Key]; !ok {
		c.tombSeen[e.Key] = now
	}
}

// Attach gives the cluster the node's volumes, once they are open (they
// need the cluster for their sync flushes, so they open after it); a
// *volume.Manager is both vols and views. life ends when the node stops.
func (c *Cluster) Attach(life context.Context, vols Volumes, views Views) {
	c.life, c.vols, c.views = life, vols, views
}

// Net is the network the cluster runs over.
func (c *Cluster) Net() meshnet.Network { return c.net }

// Catalog is the node's replica of the mesh catalog.
func (c *Cluster) Catalog() *catalog.Catalog { return c.cat }

// Self is this node's identity.
func (c *Cluster) Self() meshnet.PeerID { return c.self }

// Site is this node's failure domain.
func (c *Cluster) Site() string { return c.site }

// Clock is the cluster's time source.
func (c *Cluster) Clock() clock.Clock { return c.clock }

// Poke wakes the reconcile loop.
func (c *Cluster) Poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Members returns every known member, this node included.
func (c *Cluster) Members() []meshnet.Member { return c.net.Members() }

// Live returns the live members for placement, this node included.
func (c *Cluster) Live() []placement.Member {
	var out []placement.Member
	for _, m := range c.net.Members() {
		if m.State == meshnet.StateAlive {
			out = append(out, placement.Member{ID: string(m.ID), Site: m.Site})
		}
	}
	return out
}

// Alive reports whether the member with the base58 peer ID id is alive.
func (c *Cluster) Alive(id string) bool {
	for _, m := range c.net.Members() {
		if m.ID.String() == id {
			return m.State == meshnet.StateAlive
		}
	}
	return false
}

// SitePeers returns the live members of site other than this node, in
// placement order for key.
func (c *Cluster) SitePeers(site string, key cid.Cid) []meshnet.PeerID {
	var members []placement.Member
	for _, m := range c.net.Members() {
		if m.Site == site && m.ID != c.self && m.State == meshnet.StateAlive {
			members = append(members, placement.Member{ID: string(m.ID), Site: m.Site})
		}
	}
	var out []meshnet.PeerID
	for _, m := range placement.Place(key.Hash(), members, len(members)) {
		out = append(out, meshnet.PeerID(m.ID))
	}
	return out
}

// SaveCatalog writes the catalog to its file if it changed since the last
// save.
func (c *Cluster) SaveCatalog() error {
	c.mu.Lock()
	dirty := c.dirty && c.catPath != ""
	c.dirty = false
	c.mu.Unlock()
	if !dirty {
		return nil
	}
	if err := c.cat.Save(c.catPath); err != nil {
		c.mu.Lock()
		c.dirty = true
		c.mu.Unlock()
		return fmt.Errorf("save catalog: %w", err)
	}
	return nil
}
