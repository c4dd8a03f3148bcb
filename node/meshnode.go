package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockmap"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/cluster"
	"github.com/weft-mesh/weft/cluster/transfer"
	"github.com/weft-mesh/weft/heal"
	"github.com/weft-mesh/weft/mesh"
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

// meshNode is the mesh half of a node: membership, the replicated catalog,
// the block exchange, replication and heal. A node without listen
// addresses runs alone and has none (nil).
type meshNode struct {
	// life ends when the node stops: background work that a request starts
	// (a replication push after a commit) outlives the request, not the node.
	life      context.Context
	self      meshnet.PeerID
	selfStr   string // base58, as the catalog names peers
	site      string
	log       *slog.Logger
	net       *mesh.Mesh
	cat       *catalog.Catalog
	catPath   string
	blocks    *exchange.Client
	local     blockstore.Store
	fetch     *heal.FetchingStore
	healer    *heal.Healer
	pusher    *heal.Pusher
	vols      *volume.Manager // set once the volumes are open
	cl        *cluster.Cluster
	transfers *transfer.Service // set by startTransfers, once the volumes are open

	// redundancy is the one account of confirmed copies every report of
	// under-replicated blocks reads (see underReplicated).
	redundancy *heal.Redundancy

	reconcileMu sync.Mutex // see reconcile

	mu     sync.Mutex
	pushed map[string]cid.Cid // disk → last root its placement sets confirmed
	// tried is, per disk, the last root an async push attempted and left
	// to heal when it failed: not pushed again at every reconcile, and
	// never the base of a later push, which sends only blocks new since
	// its base (a sync flush on top of it would skip the unconfirmed ones).
	tried   map[string]cid.Cid
	pushing map[string]bool
	dirty   bool // the catalog changed since it was saved

	wake chan struct{}
}

// startMesh starts the mesh of a node whose config has listen addresses.
// log names the node only: each part tags its own component.
func startMesh(ctx context.Context, cfg Config, id Identity, store blockstore.Store, log *slog.Logger) (*meshNode, error) {
	secret, err := loadClusterSecret(cfg.Path(ClusterSecretFile))
	if err != nil {
		return nil, err
	}
	self, err := id.PeerID()
	if err != nil {
		return nil, err
	}
	catPath := cfg.Path(MeshDir + "/" + catalogFile)
	cat, err := catalog.Load(catPath, self.String())
	if err != nil {
		return nil, err
	}
	n := &meshNode{
		self: self, selfStr: self.String(), site: cfg.Site, log: log.With("component", "mesh"),
		cat: cat, catPath: catPath, local: store,
		pushed: map[string]cid.Cid{}, tried: map[string]cid.Cid{}, pushing: map[string]bool{},
		wake: make(chan struct{}, 1),
	}
	mcfg := mesh.DefaultConfig()
	mcfg.Key = id.Key
	mcfg.Listen = cfg.Listen
	mcfg.Secret = secret
	mcfg.Site = cfg.Site
	mcfg.Dir = cfg.Path(MeshDir)
	mcfg.Detector = cfg.Detector()
	mcfg.Logger = log
	mcfg.State = cluster.GossipState(cat, n.log)
	mcfg.Capacity = func() (int64, int64) {
		st := store.Stats()
		return st.DiskBytes, freeBytes(cfg.Path(BlocksDir))
	}
	if n.net, err = mesh.New(ctx, mcfg); err != nil {
		return nil, fmt.Errorf("start mesh (listen addresses in %s): %w", cfg.Path(ConfigFile), err)
	}
	n.blocks = &exchange.Client{Dialer: meshnet.Dialer{Net: n.net, Proto: exchange.Protocol}}
	srv := &exchange.Server{Store: store, Logger: log}
	n.net.Handle(exchange.Protocol, func(ctx context.Context, from meshnet.PeerID, s io.ReadWriteCloser) {
		srv.ServeStream(ctx, string(from), s)
	})
	n.net.Handle(catalogProtocol, n.serveCatalogPush)
	healLog := log.With("component", "heal")
	n.fetch = &heal.FetchingStore{Store: store, Self: string(self), Peers: n.blocks, Members: n.members, Logger: healLog}
	maps := blockmap.New(n.fetch, 4096)
	n.redundancy = heal.NewRedundancy(maps, memberIDs(n.members()))
	// Heal passes start in attach, once the volumes (healRoots) are open.
	n.healer = heal.New(heal.Config{
		Self: string(self), Store: store, Maps: maps, Peers: n.blocks,
		Members: n.members, Roots: n.healRoots, Redundancy: n.redundancy, Bandwidth: float64(cfg.HealBandwidth),
		Concurrency: cfg.HealConcurrency, Interval: cfg.HealInterval, Logger: healLog,
	})
	n.pusher = &heal.Pusher{Self: string(self), Store: store, Maps: blockmap.New(store, 1024), Peers: n.blocks,
		Members: n.members, Redundancy: n.redundancy}
	ccfg := cluster.DefaultConfig()
	ccfg.Net, ccfg.Catalog, ccfg.CatalogPath, ccfg.Site = n.net, cat, catPath, cfg.Site
	ccfg.Pusher, ccfg.Logger = n.pusher, n.log
	if n.cl, err = cluster.New(ccfg); err != nil {
		n.net.Close()
		return nil, err
	}
	cat.OnChange(func(old, new catalog.Entry, ok bool) {
		n.mu.Lock()
		n.dirty = true
		n.mu.Unlock()
		n.poke()
		if old.Root != new.Root {
			n.healer.Trigger() // a new root may hold blocks this node should keep
		}
	})
	n.net.OnMembershipChange(func() {
		n.redundancy.SetMembers(memberIDs(n.members()))
		n.healer.Trigger()
		n.poke()
	})
	return n, nil
}

// members returns the live members for placement, this node included.
func (n *meshNode) members() []placement.Member {
	var out []placement.Member
	for _, m := range n.net.Members() {
		if m.State == mesh.StateAlive {
			out = append(out, placement.Member{ID: string(m.ID), Site: m.Site})
		}
	}
	return out
}

// memberIDs returns the placement IDs of ms.
func memberIDs(ms []placement.Member) []string {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return ids
}

// publish writes e to the catalog and gossips it.
func (n *meshNode) publish(e catalog.Entry) (catalog.Entry, error) {
	e, err := n.cat.Put(e)
	if err != nil {
		return e, err
	}
	n.broadcast(e)
	if e.Root.Defined() {
		// A provider record per root, never per block: peers outside
		// the catalog's reach (other clusters' DHT walks) find the
		// holder of a disk or spacesuit by its root.
		go func(root cid.Cid) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := n.net.Provide(ctx, root); err != nil {
				n.log.Debug("provide root", "root", root, "err", err)
			}
		}(e.Root)
	}
	return e, nil
}

func (n *meshNode) broadcast(e catalog.Entry) {
	b, err := catalog.Encode([]catalog.Entry{e})
	if err != nil {
		n.log.Error("encode catalog entry", "key", e.Key, "err", err)
		return
	}
	n.net.Broadcast(b)
}

func (n *meshNode) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// attach connects the mesh to the node's volumes and starts the loops that
// publish local changes, adopt disks handed to this node, replicate and
// heal. It returns when ctx ends.
func (n *meshNode) attach(ctx context.Context, vols *volume.Manager, cfg Config, wg *sync.WaitGroup) {
	n.vols = vols
	n.life = ctx
	wg.Add(3)
	go func() { defer wg.Done(); n.healer.Run(ctx) }()
	go func() { defer wg.Done(); n.reconcileLoop(ctx) }()
	go func() { defer wg.Done(); n.transfers.Run(ctx) }()
	if len(cfg.Join) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			jctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if _, err := n.net.Join(jctx, cfg.Join); err != nil {
				n.log.Warn("join failed", "addrs", cfg.Join, "err", err)
			}
		}()
	}
	n.healer.Trigger()
}

// healRoots lists every root of the catalog for heal; the roots this node
// uses itself are marked local, so their blocks stay here as a cache.
func (n *meshNode) healRoots() []heal.Root {
	local := map[cid.Cid]bool{}
	for _, r := range n.vols.Records() {
		local[r.Root] = true
	}
	for _, r := range n.transfers.PartialRoots() {
		local[r] = true
	}
	var out []heal.Root
	for _, e := range n.cat.List("") {
		if e.Root.Defined() {
			out = append(out, heal.Root{Root: e.Root, Replicas: max(e.Replicas, 1), Local: local[e.Root]})
			delete(local, e.Root)
		}
	}
	for r := range local { // partial transfers of roots the catalog no longer names
		out = append(out, heal.Root{Root: r, Replicas: 1, Local: true})
	}
	return out
}

// catalogRoots is every root of the catalog and of the transfers received
// in part: GC keeps their blocks.
func (n *meshNode) catalogRoots() []cid.Cid {
	out := n.transfers.PartialRoots()
	for _, e := range n.cat.List("") {
		if e.Root.Defined() {
			out = append(out, e.Root)
		}
	}
	return out
}

// syncFlush is the volume's SyncFlush: it returns once root's blocks are on
// their placement sets.
func (n *meshNode) syncFlush(ctx context.Context, disk string, root cid.Cid) error {
	e, ok := n.cat.Get(catalog.DiskKey(disk))
	if ok && e.Owner != n.selfStr {
		return fmt.Errorf("disk %q is owned by %s now: %w", disk, e.Owner, catalog.ErrFenced)
	}
	r := volume.DefaultReplicas
	for _, rec := range n.vols.Records() {
		if rec.Disk == disk && rec.Replica == "" {
			r = rec.Replicas
		}
	}
	n.mu.Lock()
	prev := n.pushed[disk]
	n.mu.Unlock()
	if _, err := n.pusher.Push(ctx, prev, root, r); err != nil {
		return err
	}
	n.mu.Lock()
	n.pushed[disk] = root
	n.mu.Unlock()
	// The holders must know the root before the flush returns, or a
	// takeover after this node's death would start from an older one.
	n.reconcile(ctx)
	e, ok = n.cat.Get(catalog.DiskKey(disk))
	if !ok || e.Root != root {
		return fmt.Errorf("disk %q: root %s not in the catalog after the flush", disk, root)
	}
	acks, err := n.pushEntries(ctx, []catalog.Entry{e})
	if acks < r-1 {
		return fmt.Errorf("disk %q: %d of %d other nodes confirmed the new root: %w", disk, acks, r-1, err)
	}
	return nil
}

// close leaves the mesh and saves the catalog.
func (n *meshNode) close() error {
	err := n.net.Close()
	return errors.Join(err, n.saveCatalog())
}

func (n *meshNode) saveCatalog() error {
	n.mu.Lock()
	dirty := n.dirty
	n.dirty = false
	n.mu.Unlock()
	if !dirty {
		return nil
	}
	if err := n.cat.Save(n.catPath); err != nil {
		n.mu.Lock()
		n.dirty = true
		n.mu.Unlock()
		return fmt.Errorf("save catalog: %w", err)
	}
	return nil
}

// repair replaces a corrupt local block with a verified copy from the
// mesh: a read through the fetching store does it, and leaves the bad
// copy in place (still reported) when no member has a good one.
func (n *meshNode) repair(ctx context.Context, c cid.Cid) error {
	_, err := n.fetch.Get(ctx, c)
	return err
}
