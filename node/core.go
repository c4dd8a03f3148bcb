package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockmap"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/cluster"
	"github.com/weft-mesh/weft/cluster/transfer"
	"github.com/weft-mesh/weft/heal"
	"github.com/weft-mesh/weft/internal/clock"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/exchange"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/placement"
	"github.com/weft-mesh/weft/volume"
)

// Files of the mesh inside a node's home.
const (
	MeshDir     = "mesh"
	catalogFile = "catalog.json"
)

// CoreConfig configures a Core. Home and Store are required; Net and
// Catalog go together (both or neither).
type CoreConfig struct {
	// Home holds the volumes (VolumesDir) and, with a network, the saved
	// catalog, the transfer journal and the partial roots (MeshDir).
	Home string
	// Site is this node's failure domain.
	Site string
	// Net is the network the node is a member of; nil runs it alone. The
	// Core owns it from NewCore on: Close closes it, and so does a NewCore
	// that fails.
	Net meshnet.Network
	// Join lists addresses Run joins at start.
	Join []string
	// Store holds the local blocks; the caller opens and closes it.
	Store blockstore.Store
	// Catalog is the node's replica of the mesh catalog, the one the
	// network's state delegate (cluster.GossipState) merges into.
	Catalog *catalog.Catalog
	// Clock is the time source; nil is the wall clock.
	Clock  clock.Clock
	Logger *slog.Logger // names the node; each part tags its component

	// CommitInterval bounds how long a write stays uncommitted (0: only
	// flushes and explicit commits commit); BlockCacheBytes bounds the
	// verified blocks kept in memory (0: the volume default).
	CommitInterval  time.Duration
	BlockCacheBytes int64
	// Heal: the time between passes with no change to wake them, the
	// bytes per second heal copies here (0: no cap), its fetches in flight.
	HealInterval    time.Duration
	HealBandwidth   int64
	HealConcurrency int
	// TransferBandwidth is the transfers' budget in bytes per second (0:
	// no cap).
	TransferBandwidth int64
	// ReserveBytes is the free space blocks stored for the mesh leave on
	// the home's file system (0: DefaultReserve; see space.go).
	ReserveBytes int64
	// ReconcileEvery and AnnounceTimeout time the cluster layer (0: its
	// defaults).
	ReconcileEvery, AnnounceTimeout time.Duration
	// PeerBlockGrace is how long GC keeps blocks stored for peers that no
	// root it knows reaches yet (0: volume.DefaultPeerBlockGrace).
	PeerBlockGrace time.Duration
}

// Core is a node without its sockets: the volumes over the local blocks
// and, on a network, the cluster layer, the fetching store, heal (healer,
// pusher, redundancy account) and transfers. A daemon (Run) wraps one in
// its home lock, identity, libp2p mesh and doors (NBD, FUSE, the local
// API); a test runs several over the in-memory network.
type Core struct {
	// Store holds the local blocks.
	Store blockstore.Store
	// Vols are the node's disks, replicas and spacesuits.
	Vols *volume.Manager

	cfg  CoreConfig
	log  *slog.Logger
	mesh *meshNode // nil when the node runs alone
}

// NewCore opens the node's volumes and, with a network, builds its mesh
// half. It starts no background work but the volumes' commits: Run does.
// ctx bounds the opening only.
func NewCore(ctx context.Context, cfg CoreConfig) (*Core, error) {
	if err := cfg.validate(); err != nil {
		if cfg.Net != nil {
			cfg.Net.Close()
		}
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Core{Store: cfg.Store, cfg: cfg, log: cfg.Logger.With("component", "node")}
	vcfg := volume.DefaultConfig()
	vcfg.Dir = filepath.Join(cfg.Home, VolumesDir)
	vcfg.Store = cfg.Store
	vcfg.MinFreeBytes = overlayFloor
	if cfg.Net != nil {
		mn, err := newMeshNode(cfg)
		if err != nil {
			cfg.Net.Close()
			return nil, err
		}
		// Before the volumes open: peers that see this node alive push to
		// it at once, and their streams wait for the volumes.
		if err := mn.startTransfers(cfg); err != nil {
			mn.close()
			return nil, err
		}
		c.mesh = mn
		vcfg.Store = mn.fetch
		vcfg.ExtraRoots = mn.cl.CatalogRoots
		vcfg.SyncFlush = mn.cl.SyncFlush
		vcfg.PeerBlocks = mn.peerBlocks
	}
	vcfg.Logger = cfg.Logger.With("component", "volume")
	vcfg.CommitInterval = cfg.CommitInterval
	if cfg.BlockCacheBytes > 0 {
		vcfg.BlockCacheBytes = cfg.BlockCacheBytes
	}
	vcfg.Now = cfg.Clock.Now
	vols, err := volume.Open(ctx, vcfg)
	if err != nil {
		if c.mesh != nil {
			c.mesh.close()
		}
		return nil, fmt.Errorf("open volumes: %w", err)
	}
	c.Vols = vols
	if c.mesh != nil {
		// Before any request: the API may serve before Run starts.
		c.mesh.vols = vols
		c.mesh.cl.Attach(c.mesh.life, vols, vols)
		c.mesh.transfers.AttachVolumes(vols)
	}
	return c, nil
}

func (cfg CoreConfig) validate() error {
	var errs []error
	if cfg.Home == "" {
		errs = append(errs, errors.New("no home"))
	}
	if cfg.Store == nil {
		errs = append(errs, errors.New("no block store"))
	}
	if (cfg.Net == nil) != (cfg.Catalog == nil) {
		errs = append(errs, errors.New("a network needs a catalog and a catalog a network"))
	}
	if cfg.CommitInterval < 0 || cfg.HealInterval < 0 || cfg.ReconcileEvery < 0 || cfg.AnnounceTimeout < 0 || cfg.PeerBlockGrace < 0 {
		errs = append(errs, errors.New("negative period"))
	}
	if cfg.HealBandwidth < 0 || cfg.HealConcurrency < 0 || cfg.TransferBandwidth < 0 || cfg.ReserveBytes < 0 {
		errs = append(errs, errors.New("negative bandwidth, concurrency or reserve"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("node core config: %w", err)
	}
	return nil
}

// Cluster is the node's cluster layer; nil when it runs alone.
func (c *Core) Cluster() *cluster.Cluster {
	if c.mesh == nil {
		return nil
	}
	return c.mesh.cl
}

// Run runs the node's background work (reconcile, replication, heal,
// transfer resumes, the join of CoreConfig.Join) until ctx ends, and
// returns once all of it stopped. The volumes stay open: Close closes
// them. Run a Core once.
func (c *Core) Run(ctx context.Context) {
	if c.mesh == nil {
		<-ctx.Done()
		return
	}
	var wg sync.WaitGroup
	c.mesh.start(ctx, c.cfg.Join, &wg)
	<-ctx.Done()
	c.mesh.stopLife()
	wg.Wait()
}

// Close commits the disks' heads and closes the volumes, then leaves the
// network and saves the catalog. Call it after Run returned; a Core that
// must not commit (a node that dies) is abandoned instead.
func (c *Core) Close() error {
	var errs []error
	if err := c.Vols.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close volumes: %w", err))
	}
	if c.mesh != nil {
		if err := c.mesh.close(); err != nil {
			errs = append(errs, fmt.Errorf("close mesh: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Handler is the local API of the node without its doors: the routes a
// daemon serves on its socket, with no NBD export or FUSE mount to ask
// about a disk's users and none to open. It serves tests in one process.
func (c *Core) Handler() http.Handler {
	s := &server{
		cfg: Config{Home: c.cfg.Home, Site: c.cfg.Site}, store: c.Store, vols: c.Vols,
		log: c.log, started: c.cfg.Clock.Now(), nbd: &nbdService{}, iscsi: &iscsiService{}, mesh: c.mesh,
		mounts: newMountTable(c.Vols, c.mesh, c.cfg.Logger.With("component", "fuse")),
	}
	s.doors = []diskDoor{s.nbd, s.iscsi, s.mounts}
	return s.routes()
}

// meshNode is the mesh half of a node: membership, the replicated catalog,
// the block exchange, replication and heal. A node without a network runs
// alone and has none (nil).
type meshNode struct {
	// life ends when the node stops: background work that a request starts
	// (a replication push after a commit) outlives the request, not the node.
	life      context.Context
	stopLife  context.CancelFunc
	self      meshnet.PeerID
	selfStr   string // base58, as the catalog names peers
	site      string
	log       *slog.Logger
	net       meshnet.Network
	cat       *catalog.Catalog
	blocks    *exchange.Client
	local     blockstore.Store
	fetch     *heal.FetchingStore
	healer    *heal.Healer
	pusher    *heal.Pusher
	vols      *volume.Manager // set once the volumes are open
	cl        *cluster.Cluster
	transfers *transfer.Service // set by NewCore, before the volumes open

	// redundancy is the one account of confirmed copies every report of
	// under-replicated blocks reads (see underReplicated).
	redundancy *heal.Redundancy
	// peerBlocks are the blocks stored here for peers lately, which GC
	// keeps until the catalog names their root (see volume.PeerBlocks).
	peerBlocks *volume.PeerBlocks
}

// newMeshNode builds the mesh half of a node over cfg.Net and serves its
// protocols there.
func newMeshNode(cfg CoreConfig) (*meshNode, error) {
	meshDir := filepath.Join(cfg.Home, MeshDir)
	if err := os.MkdirAll(meshDir, 0o700); err != nil {
		return nil, fmt.Errorf("mesh directory: %w", err)
	}
	self := cfg.Net.Self()
	n := &meshNode{
		self: self, selfStr: self.String(), site: cfg.Site, log: cfg.Logger.With("component", "mesh"),
		net: cfg.Net, cat: cfg.Catalog, local: cfg.Store,
	}
	n.life, n.stopLife = context.WithCancel(context.Background())
	n.blocks = &exchange.Client{Dialer: meshnet.Dialer{Net: n.net, Proto: exchange.Protocol}}
	room := &peerReserve{free: func() (int64, error) { return freeBytes(cfg.Home) }, keep: reserve(cfg.ReserveBytes)}
	grace := cfg.PeerBlockGrace
	if grace == 0 {
		grace = volume.DefaultPeerBlockGrace
	}
	n.peerBlocks = volume.NewPeerBlocks(cfg.Clock.Now, grace)
	srv := &exchange.Server{Store: cfg.Store, Logger: cfg.Logger, Storing: n.peerBlocks.Storing,
		Accept: func(_ string, _ int, bytes int64) (func(), error) { return room.admit(bytes) }}
	n.net.Handle(exchange.Protocol, func(ctx context.Context, from meshnet.PeerID, s io.ReadWriteCloser) {
		srv.ServeStream(ctx, string(from), s)
	})
	healLog := cfg.Logger.With("component", "heal")
	n.fetch = &heal.FetchingStore{Store: cfg.Store, Self: string(self), Peers: n.blocks, Members: n.members, Logger: healLog}
	maps := blockmap.New(n.fetch, 4096)
	n.redundancy = heal.NewRedundancy(maps, nil) // its members are set once the cluster is up
	// Heal passes start in Run, once the volumes (the cluster's heal roots) are open.
	n.healer = heal.New(heal.Config{
		Self: string(self), Store: reservedStore{Store: cfg.Store, reserve: room, peers: n.peerBlocks}, Maps: maps, Peers: n.blocks,
		Members: n.members, Roots: func() []heal.Root { return n.cl.HealRoots() }, Redundancy: n.redundancy, Bandwidth: float64(cfg.HealBandwidth),
		Concurrency: cfg.HealConcurrency, Interval: cfg.HealInterval, Room: room.room, Logger: healLog,
	})
	// The pusher reads through the fetching store: an owner that took or
	// was handed a disk holds only some of its blocks, and a push of its
	// first root fetches the others from their holders where a placement
	// member lacks them, instead of failing and leaving the disk's held
	// root (where a later take starts) at the root it was adopted at.
	n.pusher = &heal.Pusher{Self: string(self), Store: n.fetch, Maps: blockmap.New(n.fetch, 1024), Peers: n.blocks,
		Members: n.members, Redundancy: n.redundancy}
	ccfg := cluster.DefaultConfig()
	ccfg.Net, ccfg.Catalog, ccfg.CatalogPath, ccfg.Site = n.net, cfg.Catalog, filepath.Join(meshDir, catalogFile), cfg.Site
	ccfg.Pusher, ccfg.Clock, ccfg.Logger, ccfg.LocalRoots = n.pusher, cfg.Clock, n.log, n.partialRoots
	if cfg.ReconcileEvery > 0 {
		ccfg.ReconcileEvery = cfg.ReconcileEvery
	}
	if cfg.AnnounceTimeout > 0 {
		ccfg.AnnounceTimeout = cfg.AnnounceTimeout
	}
	var err error
	if n.cl, err = cluster.New(ccfg); err != nil {
		return nil, err
	}
	n.redundancy.SetMembers(memberIDs(n.members()))
	n.cat.OnChange(func(old, new catalog.Entry, ok bool) {
		if old.Root != new.Root {
			n.healer.Trigger() // a new root may hold blocks this node should keep
		}
	})
	n.net.OnMembershipChange(func() {
		n.redundancy.SetMembers(memberIDs(n.members()))
		n.healer.Trigger()
	})
	return n, nil
}

// start starts the loops that publish local changes, adopt disks handed to
// this node, replicate and heal, and the join of the join addresses. They
// end with ctx; wg counts them.
func (n *meshNode) start(ctx context.Context, join []string, wg *sync.WaitGroup) {
	wg.Add(3)
	go func() { defer wg.Done(); n.healer.Run(ctx) }()
	go func() { defer wg.Done(); n.cl.Run(ctx) }()
	go func() { defer wg.Done(); n.transfers.Run(ctx) }()
	if len(join) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			jctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if _, err := n.net.Join(jctx, join); err != nil {
				n.log.Warn("join failed", "addrs", join, "err", err)
			}
		}()
	}
	n.healer.Trigger()
}

// members returns the live members for placement, this node included.
func (n *meshNode) members() []placement.Member { return n.cl.Live() }

// memberIDs returns the placement IDs of ms.
func memberIDs(ms []placement.Member) []string {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return ids
}

// partialRoots lists the roots of the transfers received in part; none
// before the transfer service is built.
func (n *meshNode) partialRoots() []cid.Cid {
	if n.transfers == nil {
		return nil
	}
	return n.transfers.PartialRoots()
}

// addrs returns the addresses other members reach this node at; none on a
// network without addresses (the in-memory one).
func (n *meshNode) addrs() []string {
	if a, ok := n.net.(interface{ Addrs() []string }); ok {
		return a.Addrs()
	}
	return nil
}

// forgetMember removes a dead member from the network's membership.
func (n *meshNode) forgetMember(id meshnet.PeerID) error {
	f, ok := n.net.(interface{ Forget(meshnet.PeerID) error })
	if !ok {
		return fmt.Errorf("forget %s: %w", id, meshnet.ErrUnsupported)
	}
	return f.Forget(id)
}

// close ends the node's life, leaves the mesh and saves the catalog.
func (n *meshNode) close() error {
	n.stopLife()
	err := n.net.Close()
	return errors.Join(err, n.cl.SaveCatalog())
}
