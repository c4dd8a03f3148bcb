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
	"golang.org/x/sys/unix"

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
		cat: cat, local: store,
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
	healLog := log.With("component", "heal")
	n.fetch = &heal.FetchingStore{Store: store, Self: string(self), Peers: n.blocks, Members: n.members, Logger: healLog}
	maps := blockmap.New(n.fetch, 4096)
	n.redundancy = heal.NewRedundancy(maps, nil) // its members are set once the cluster is up
	// Heal passes start in attach, once the volumes (healRoots) are open.
	n.healer = heal.New(heal.Config{
		Self: string(self), Store: store, Maps: maps, Peers: n.blocks,
		Members: n.members, Roots: func() []heal.Root { return n.cl.HealRoots() }, Redundancy: n.redundancy, Bandwidth: float64(cfg.HealBandwidth),
		Concurrency: cfg.HealConcurrency, Interval: cfg.HealInterval, Logger: healLog,
	})
	n.pusher = &heal.Pusher{Self: string(self), Store: store, Maps: blockmap.New(store, 1024), Peers: n.blocks,
		Members: n.members, Redundancy: n.redundancy}
	ccfg := cluster.DefaultConfig()
	ccfg.Net, ccfg.Catalog, ccfg.CatalogPath, ccfg.Site = n.net, cat, catPath, cfg.Site
	ccfg.Pusher, ccfg.Logger = n.pusher, n.log
	// The transfer service is built at attach, before heal and GC run.
	ccfg.LocalRoots = func() []cid.Cid { return n.transfers.PartialRoots() }
	if n.cl, err = cluster.New(ccfg); err != nil {
		n.net.Close()
		return nil, err
	}
	n.redundancy.SetMembers(memberIDs(n.members()))
	cat.OnChange(func(old, new catalog.Entry, ok bool) {
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

// publish, broadcast, reconcile and awaitCatalogEntry forward to the
// cluster for the replication and transfer code, which moves into the
// cluster next.
func (n *meshNode) publish(e catalog.Entry) (catalog.Entry, error) { return n.cl.PutRecord(e) }

// broadcast gossips e, which the caller wrote to the catalog.
func (n *meshNode) broadcast(e catalog.Entry) {
	b, err := catalog.Encode([]catalog.Entry{e})
	if err != nil {
		n.log.Error("encode catalog entry", "key", e.Key, "err", err)
		return
	}
	n.net.Broadcast(b)
}

func (n *meshNode) reconcile(ctx context.Context) { n.cl.Reconcile(ctx) }

func (n *meshNode) awaitCatalogEntry(ctx context.Context, ref volume.Ref) (catalog.Entry, bool) {
	return n.cl.AwaitEntry(ctx, ref)
}

// attach connects the mesh to the node's volumes and starts the loops that
// publish local changes, adopt disks handed to this node, replicate and
// heal. It returns when ctx ends.
func (n *meshNode) attach(ctx context.Context, vols *volume.Manager, cfg Config, wg *sync.WaitGroup) {
	n.vols = vols
	n.life = ctx
	n.cl.Attach(ctx, vols, vols)
	wg.Add(3)
	go func() { defer wg.Done(); n.healer.Run(ctx) }()
	go func() { defer wg.Done(); n.cl.Run(ctx) }()
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

// close leaves the mesh and saves the catalog.
func (n *meshNode) close() error {
	err := n.net.Close()
	return errors.Join(err, n.cl.SaveCatalog())
}

// repair replaces a corrupt local block with a verified copy from the
// mesh: a read through the fetching store does it, and leaves the bad
// copy in place (still reported) when no member has a good one.
func (n *meshNode) repair(ctx context.Context, c cid.Cid) error {
	_, err := n.fetch.Get(ctx, c)
	return err
}

// freeBytes returns the free space of the file system holding path.
func freeBytes(path string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

func rootText(c cid.Cid) string {
	if !c.Defined() {
		return ""
	}
	return c.String()
}
