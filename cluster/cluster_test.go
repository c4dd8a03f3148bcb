package cluster

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/heal"
	"github.com/weft-mesh/weft/internal/clock"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/volume"
)

// testHub is an in-process network of testNets: streams are net.Pipes,
// membership is whoever joined and is up. Broadcasts go nowhere: the tests
// look at what the catalog push protocol delivers.
type testHub struct {
	mu    sync.Mutex
	nodes map[meshnet.PeerID]*testNet
}

func newTestHub() *testHub { return &testHub{nodes: map[meshnet.PeerID]*testNet{}} }

type testNet struct {
	hub      *testHub
	id       meshnet.PeerID
	site     string
	down     bool
	handlers map[meshnet.Protocol]meshnet.Handler
}

func (h *testHub) join(name, site string) *testNet {
	n := &testNet{hub: h, id: meshnet.TestID(name), site: site, handlers: map[meshnet.Protocol]meshnet.Handler{}}
	h.mu.Lock()
	h.nodes[n.id] = n
	h.mu.Unlock()
	return n
}

// setDown marks the member dead (true) or alive.
func (h *testHub) setDown(id meshnet.PeerID, down bool) {
	h.mu.Lock()
	h.nodes[id].down = down
	h.mu.Unlock()
}

func (n *testNet) Self() meshnet.PeerID { return n.id }

func (n *testNet) Open(ctx context.Context, to meshnet.PeerID, p meshnet.Protocol) (io.ReadWriteCloser, error) {
	n.hub.mu.Lock()
	peer, ok := n.hub.nodes[to]
	var h meshnet.Handler
	if ok && !peer.down {
		h = peer.handlers[p]
	}
	n.hub.mu.Unlock()
	switch {
	case !ok || peer.down:
		return nil, meshnet.ErrUnreachable
	case h == nil:
		return nil, meshnet.ErrUnsupported
	}
	a, b := net.Pipe()
	go h(context.Background(), n.id, b)
	return a, nil
}

func (n *testNet) Handle(p meshnet.Protocol, h meshnet.Handler) {
	n.hub.mu.Lock()
	n.handlers[p] = h
	n.hub.mu.Unlock()
}

func (n *testNet) Members() []meshnet.Member {
	n.hub.mu.Lock()
	defer n.hub.mu.Unlock()
	var out []meshnet.Member
	for _, m := range n.hub.nodes {
		st := meshnet.StateAlive
		if m.down {
			st = meshnet.StateDead
		}
		out = append(out, meshnet.Member{ID: m.id, Site: m.site, State: st, Self: m.id == n.id})
	}
	return out
}

func (n *testNet) OnMembershipChange(func())                   {}
func (n *testNet) Broadcast([]byte)                            {}
func (n *testNet) Join(context.Context, []string) (int, error) { return 0, nil }
func (n *testNet) Close() error                                { return nil }

// fakePusher records the pushes asked of it and answers err.
type fakePusher struct {
	mu     sync.Mutex
	err    error
	pushes []cid.Cid
}

func (p *fakePusher) Push(_ context.Context, _, root cid.Cid, _ int) (heal.PushStats, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pushes = append(p.pushes, root)
	return heal.PushStats{}, p.err
}

// testNode is a Cluster over a testNet with real volumes over a memory
// block store and a fake clock frozen at start.
type testNode struct {
	*Cluster
	vols   *volume.Manager
	clock  *clock.Fake
	pusher *fakePusher
}

var start = time.Date(2026, 12, 1, 1, 0, 0, 0, time.UTC)

func newTestNode(t *testing.T, hub *testHub, name string) *testNode {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	netw := hub.join(name, "site-a")
	vcfg := volume.DefaultConfig()
	vcfg.Dir, vcfg.Store = t.TempDir(), blockstore.NewMemory()
	vols, err := volume.Open(ctx, vcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vols.Close() })
	fc := clock.NewFake(start)
	p := &fakePusher{}
	cfg := DefaultConfig()
	cfg.Net, cfg.Catalog, cfg.Pusher, cfg.Clock, cfg.Site = netw, catalog.New(netw.id.String()), p, fc, "site-a"
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Attach(ctx, vols, vols)
	return &testNode{Cluster: c, vols: vols, clock: fc, pusher: p}
}

// importDisk makes disk on n holding data, committed, and returns its root.
func (n *testNode) importDisk(t *testing.T, disk string, replicas int, data string) cid.Cid {
	t.Helper()
	info, err := n.vols.Import(context.Background(), volume.DiskSpec{Name: disk, Replicas: replicas},
		bytes.NewReader(bytes.Repeat([]byte(data), 1<<14)))
	if err != nil {
		t.Fatal(err)
	}
	root, err := cid.Decode(info.Root)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func (n *testNode) put(t *testing.T, e catalog.Entry) {
	t.Helper()
	if _, err := n.cat.Put(e); err != nil {
		t.Fatalf("put %s: %v", e.Key, err)
	}
}

func (n *testNode) replicas(t *testing.T, disk string) []string {
	t.Helper()
	rs, err := n.vols.ListReplicas(context.Background(), disk)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}
