// Package nodetest runs complete nodes (volumes, cluster layer, heal,
// transfers: a node.Core) in one process over the in-memory network, for
// tests that show in seconds what the end-to-end tests show with daemons.
// Every node is driven through the same local API the CLI uses, served
// in process (no socket), so that a scenario reads as the CLI commands of
// its end-to-end twin.
//
// It imports testing: only tests may import it (cmd/weft must not).
package nodetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/blockmap"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/cluster"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/memnet"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/node"
)

// Timings of a test node: short, so that a scenario takes seconds.
const (
	ReconcileEvery = 200 * time.Millisecond
	HealInterval   = 500 * time.Millisecond
	PushPullEvery  = 200 * time.Millisecond
	// AnnounceTimeout bounds how long a command waits for the members to
	// confirm its records (a daemon's 5 s would stall a scenario whose
	// nodes are down on purpose).
	AnnounceTimeout = time.Second
)

// NewNetwork returns an in-memory network whose members exchange their
// gossip state every PushPullEvery, closed when the test ends.
func NewNetwork(t testing.TB) *memnet.Network {
	t.Helper()
	net := memnet.New()
	net.SetPushPull(PushPullEvery)
	t.Cleanup(net.Close)
	return net
}

// Node is a complete node of a test: a node.Core over a memnet member,
// with memory blocks and a home in the test's temporary directory.
type Node struct {
	Name string
	Site string
	ID   meshnet.PeerID
	// Core is the running node; Restart replaces it.
	Core *node.Core

	t      testing.TB
	net    *memnet.Network
	cfg    node.CoreConfig // of the first start: home, store, options
	log    *slog.Logger
	member *memnet.Node
	api    http.Handler
	cancel context.CancelFunc
	ran    chan struct{}

	mu     sync.Mutex
	killed bool
	// started and applied count the deliveries of membership changes:
	// started before the core's callbacks run, applied after them (see
	// MembershipMark).
	started, applied atomic.Uint64
}

// NewNode starts a node named name (its peer ID is meshnet.TestID(name)) at
// site on net. It commits only on flushes and explicit commits, so that a
// write nobody flushed never counts. The node stops, committing, when the
// test ends, unless Kill stopped it first.
func NewNode(t testing.TB, net *memnet.Network, name, site string) *Node {
	t.Helper()
	n := &Node{Name: name, Site: site, ID: meshnet.TestID(name), t: t, net: net, log: testLogger(t, name)}
	n.cfg = node.CoreConfig{
		Home: t.TempDir(), Site: site, Store: blockstore.NewMemory(), Logger: n.log,
		HealInterval: HealInterval, ReconcileEvery: ReconcileEvery, AnnounceTimeout: AnnounceTimeout,
		BlockCacheBytes: 8 << 20,
	}
	n.start(catalog.New(n.ID.String()))
	t.Cleanup(n.stop)
	return n
}

// start joins the network with cat as the gossiped catalog and runs a
// Core over the node's home and blocks.
func (n *Node) start(cat *catalog.Catalog) {
	n.t.Helper()
	cfg := n.cfg
	cfg.Catalog = cat
	n.member = n.net.Join(n.ID, n.Site, cluster.GossipState(cat, n.log.With("component", "mesh")))
	cfg.Net = n.member
	// Registered around the core's own callbacks, which one goroutine
	// runs in order: see MembershipMark.
	n.member.OnMembershipChange(func() { n.started.Add(1) })
	core, err := node.NewCore(context.Background(), cfg)
	if err != nil {
		n.t.Fatalf("node %s: %v", n.Name, err)
	}
	n.member.OnMembershipChange(func() { n.applied.Store(n.started.Load()) })
	ctx, cancel := context.WithCancel(context.Background())
	n.Core, n.api, n.cancel, n.ran = core, core.Handler(), cancel, make(chan struct{})
	go func() { defer close(n.ran); core.Run(ctx) }()
}

// stop stops a node that was not killed as a daemon stops: its background
// work ends, then its heads are committed and it leaves the network.
func (n *Node) stop() {
	if n.setKilled(true) {
		return
	}
	n.cancel()
	<-n.ran
	if err := n.Core.Close(); err != nil {
		n.t.Errorf("node %s: close: %v", n.Name, err)
	}
}

// setKilled records whether the node is stopped and returns whether it
// was.
func (n *Node) setKilled(killed bool) (was bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	was, n.killed = n.killed, killed
	return was
}

// Kill stops the node as a crash does: it drops off the network (Down)
// first, then its background work ends, and nothing is committed: a write
// not flushed (a sync disk) or not committed is lost with it.
func (n *Node) Kill() {
	n.t.Helper()
	if n.setKilled(true) {
		n.t.Fatalf("node %s: killed twice", n.Name)
	}
	n.net.Down(string(n.ID))
	n.cancel()
	<-n.ran
}

// Restart starts a killed node again, as a daemon restarted on the same
// home: the same blocks, volumes and saved catalog, back on the network.
func (n *Node) Restart() {
	n.t.Helper()
	if !n.setKilled(false) {
		n.t.Fatalf("node %s: restarted while running", n.Name)
	}
	n.member.Close()
	n.net.Up(string(n.ID))
	cat, err := catalog.Load(filepath.Join(n.cfg.Home, node.MeshDir, "catalog.json"), n.ID.String())
	if err != nil {
		n.t.Fatalf("node %s: %v", n.Name, err)
	}
	n.start(cat)
}

// MembershipMark returns a mark of the membership changes the node has
// begun to deliver to its core. Taken after a change (a Kill of another
// node), MembershipApplied(mark) then reports whether the core has
// surely seen it: a delivery that began after the mark has ended, and its
// callbacks (the redundancy account's SetMembers among them) read the
// membership as of after the change.
func (n *Node) MembershipMark() uint64 { return n.started.Load() }

// MembershipApplied reports whether a delivery begun after mark has ended.
func (n *Node) MembershipApplied(mark uint64) bool { return n.applied.Load() > mark }

// Disks lists the disks as the node sees them (weft disk ls).
func (n *Node) Disks(ctx context.Context) ([]api.DiskInfo, error) {
	var ds []api.DiskInfo
	return ds, n.call(ctx, http.MethodGet, "/v1/disks", nil, &ds)
}

// Status is the node's status (weft status); its under_replicated is the
// figure of the metrics and the dashboard too.
func (n *Node) Status(ctx context.Context) (node.Status, error) {
	var st node.Status
	return st, n.call(ctx, http.MethodGet, "/v1/status", nil, &st)
}

// Down takes the node off the network (it keeps running, alone); Up brings
// it back.
func (n *Node) Down() { n.net.Down(string(n.ID)) }

// Up undoes Down.
func (n *Node) Up() { n.net.Up(string(n.ID)) }

// CutFrom partitions n from each of others; HealWith undoes it.
func (n *Node) CutFrom(others ...*Node) {
	for _, o := range others {
		n.net.Cut(string(n.ID), string(o.ID))
	}
}

// HealWith undoes CutFrom.
func (n *Node) HealWith(others ...*Node) {
	for _, o := range others {
		n.net.Heal(string(n.ID), string(o.ID))
	}
}

// call sends a request to the node's local API and decodes its JSON answer
// into out (nil: ignored). An answer that is not a success is an error
// carrying the API's message.
func (n *Node) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader = http.NoBody
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req := httptest.NewRequestWithContext(ctx, method, "http://weft"+path, body)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	n.api.ServeHTTP(rec, req)
	if rec.Code/100 != 2 {
		return fmt.Errorf("node %s: %s %s: %d %s", n.Name, method, path, rec.Code, bytes.TrimSpace(rec.Body.Bytes()))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
		return fmt.Errorf("node %s: %s %s: decode answer: %w", n.Name, method, path, err)
	}
	return nil
}

// CreateDisk creates a disk on the node (weft disk create).
func (n *Node) CreateDisk(ctx context.Context, name string, size int64, replicas int, sync bool) (api.DiskInfo, error) {
	var info api.DiskInfo
	req := api.CreateDiskRequest{Name: name, Size: size, Replicas: replicas, Sync: sync}
	return info, n.call(ctx, http.MethodPost, "/v1/disks", req, &info)
}

// DiskInfo describes a disk as the node sees it (weft disk info):
// owner, epoch and under-replicated blocks included.
func (n *Node) DiskInfo(ctx context.Context, name string) (api.DiskInfo, error) {
	var info api.DiskInfo
	return info, n.call(ctx, http.MethodGet, "/v1/disks/"+url.PathEscape(name), nil, &info)
}

// Commit commits a disk's head (weft disk commit): its writes count from
// now on and replicate in the background.
func (n *Node) Commit(ctx context.Context, name string) (api.DiskInfo, error) {
	var info api.DiskInfo
	return info, n.call(ctx, http.MethodPost, "/v1/disks/"+url.PathEscape(name)+"/commit", nil, &info)
}

// Replicas lists a disk's replicas on the node (weft replica ls).
func (n *Node) Replicas(ctx context.Context, disk string) ([]api.ReplicaInfo, error) {
	var rs []api.ReplicaInfo
	return rs, n.call(ctx, http.MethodGet, "/v1/disks/"+url.PathEscape(disk)+"/replicas", nil, &rs)
}

// Restore makes replica the disk's head, keeping the head first in a
// backup replica (weft replica restore).
func (n *Node) Restore(ctx context.Context, disk, replica string) (api.RestoreResult, error) {
	var res api.RestoreResult
	return res, n.call(ctx, http.MethodPost, "/v1/disks/"+url.PathEscape(disk)+"/replicas/"+url.PathEscape(replica)+"/restore", nil, &res)
}

// RemoveReplica removes a replica of a disk (weft replica rm).
func (n *Node) RemoveReplica(ctx context.Context, disk, replica string) error {
	return n.call(ctx, http.MethodDelete, "/v1/disks/"+url.PathEscape(disk)+"/replicas/"+url.PathEscape(replica), nil, nil)
}

// Take takes a disk over (weft disk take [--force]).
func (n *Node) Take(ctx context.Context, disk string, force bool) (api.DiskInfo, error) {
	var info api.DiskInfo
	return info, n.call(ctx, http.MethodPost, "/v1/disks/"+url.PathEscape(disk)+"/take", api.TakeRequest{Force: force}, &info)
}

// Publish publishes source (DISK or DISK@REPLICA) as the next version of
// the spacesuit name (weft spacesuit publish).
func (n *Node) Publish(ctx context.Context, name, source string) (api.SpacesuitInfo, error) {
	var info api.SpacesuitInfo
	return info, n.call(ctx, http.MethodPost, "/v1/spacesuits", api.PublishRequest{Name: name, Source: source}, &info)
}

// Push starts a transfer of source to targets (weft transfer push).
func (n *Node) Push(ctx context.Context, source string, targets ...string) (api.TransferInfo, error) {
	var info api.TransferInfo
	return info, n.call(ctx, http.MethodPost, "/v1/transfers", api.TransferRequest{Source: source, Targets: targets}, &info)
}

// Transfer describes a transfer of the node (weft transfers).
func (n *Node) Transfer(ctx context.Context, id string) (api.TransferInfo, error) {
	var info api.TransferInfo
	return info, n.call(ctx, http.MethodGet, "/v1/transfers/"+url.PathEscape(id), nil, &info)
}

// Replicate adds or changes a replication policy (weft replicate).
func (n *Node) Replicate(ctx context.Context, req api.ReplicateRequest) (api.Policy, error) {
	var p api.Policy
	return p, n.call(ctx, http.MethodPost, "/v1/replicate", req, &p)
}

// Policies lists the replication policies (weft replicate ls).
func (n *Node) Policies(ctx context.Context) ([]api.Policy, error) {
	var ps []api.Policy
	return ps, n.call(ctx, http.MethodGet, "/v1/replicate", nil, &ps)
}

// Recover brings disk back to its last state replicated to site (weft
// disk recover --from).
func (n *Node) Recover(ctx context.Context, disk, site string) (api.DiskInfo, error) {
	var info api.DiskInfo
	return info, n.call(ctx, http.MethodPost, "/v1/disks/"+url.PathEscape(disk)+"/recover", api.RecoverRequest{From: site}, &info)
}

// Clone clones ref, here or anywhere the catalog names it, as the new
// disk name (weft disk clone).
func (n *Node) Clone(ctx context.Context, ref, name string) (api.DiskInfo, error) {
	var info api.DiskInfo
	return info, n.call(ctx, http.MethodPost, "/v1/disks/"+url.PathEscape(ref)+"/clone", api.CloneRequest{Name: name}, &info)
}

// Export reads ref (DISK, DISK@REPLICA, NAME@N), here or wherever the
// catalog names it, as weft disk export does.
func (n *Node) Export(ctx context.Context, ref string) ([]byte, error) {
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "http://weft/v1/disks/"+url.PathEscape(ref)+"/export", http.NoBody)
	rec := httptest.NewRecorder()
	n.api.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return nil, fmt.Errorf("node %s: export %s: %d %s", n.Name, ref, rec.Code, bytes.TrimSpace(rec.Body.Bytes()))
	}
	er, err := api.NewExportReader(rec.Body)
	if err != nil {
		return nil, fmt.Errorf("node %s: export %s: %w", n.Name, ref, err)
	}
	out := make([]byte, er.Size())
	for {
		r, err := er.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("node %s: export %s: %w", n.Name, ref, err)
		}
		if r.Kind == api.RecordData {
			copy(out[r.Off:], r.Data)
		}
	}
}

// Write writes p at off in the disk's head, as a door does.
func (n *Node) Write(ctx context.Context, disk string, p []byte, off int64) error {
	h, err := n.Core.Vols.Head(disk)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	if _, err := h.WriteAtContext(ctx, p, off); err != nil {
		return fmt.Errorf("node %s: write %s at %d: %w", n.Name, disk, off, err)
	}
	return nil
}

// Flush flushes the disk's head, as a door's FLUSH does: on a sync disk it
// returns once the mesh holds the writes.
func (n *Node) Flush(ctx context.Context, disk string) error {
	h, err := n.Core.Vols.Head(disk)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	if err := h.Flush(ctx); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	return nil
}

// Read reads size bytes at off of the disk's head.
func (n *Node) Read(ctx context.Context, disk string, off int64, size int) ([]byte, error) {
	h, err := n.Core.Vols.Head(disk)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	p := make([]byte, size)
	if _, err := h.ReadAtContext(ctx, p, off); err != nil {
		return nil, fmt.Errorf("node %s: read %s at %d: %w", n.Name, disk, off, err)
	}
	return p, nil
}

// Entry returns the node's catalog record of key (tombstones hidden).
func (n *Node) Entry(key string) (catalog.Entry, bool) {
	return n.Core.Cluster().Catalog().Get(key)
}

// Has reports whether the node holds block c in its local store.
func (n *Node) Has(ctx context.Context, c cid.Cid) bool {
	ok, err := n.Core.Store.Has(ctx, c)
	return err == nil && ok
}

// DataBlocks lists the data blocks of a disk's root, read from the
// node's local store. Its map nodes are left out: every node that heals
// or reads the disk caches them.
func (n *Node) DataBlocks(ctx context.Context, info api.DiskInfo) ([]cid.Cid, error) {
	root, err := cid.Parse(info.Root)
	if err != nil {
		return nil, fmt.Errorf("disk %s: root %q: %w", info.Name, info.Root, err)
	}
	nblocks := uint64(info.Size / info.BlockSize)
	var out []cid.Cid
	err = blockmap.New(n.Core.Store, 0).Walk(ctx, root, blockmap.Levels(nblocks), 0, nblocks, func(_ uint64, c cid.Cid) error {
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("node %s: blocks of %s: %w", n.Name, root, err)
	}
	return out, nil
}

// Await calls cond until it returns "" (met), or fails the test when
// within passes, with the last reason cond gave. It polls: the conditions
// span several nodes and no one event says they hold.
func Await(t testing.TB, within time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v: %s", what, within, why)
		}
		<-tick.C
	}
}

// Rand returns the random source of a test, seeded from WEFT_SEED if set,
// else from the time; the seed is logged so that a failure can be replayed.
func Rand(t testing.TB) *rand.Rand {
	t.Helper()
	seed := time.Now().UnixNano()
	if s := os.Getenv("WEFT_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("WEFT_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with WEFT_SEED=%d)", seed, seed)
	return rand.New(rand.NewPCG(uint64(seed), 0))
}

// testLogger returns a logger naming the node that writes to the test's
// log until the test ends (background work may outlive it by a moment).
func testLogger(t testing.TB, name string) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	level := slog.LevelWarn
	if os.Getenv("WEFT_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})).With("node", name)
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
