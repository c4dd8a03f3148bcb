package cluster

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/heal"
	"github.com/weft-mesh/weft/internal/clock"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/memnet"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/volume"
)

// testHub is a memnet network for the test nodes.
type testHub struct{ *memnet.Network }

func newTestHub(t *testing.T) *testHub {
	n := memnet.New()
	t.Cleanup(n.Close)
	return &testHub{n}
}

// join adds a member with no cluster: an owner that is gone, say.
func (h *testHub) join(name string) *memnet.Node {
	return h.Join(meshnet.TestID(name), "site-a", nil)
}

// setDown marks the member dead (true) or alive again.
func (h *testHub) setDown(id meshnet.PeerID, down bool) {
	if down {
		h.Down(string(id))
	} else {
		h.Up(string(id))
	}
}

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
// block store, both on a fake clock frozen at start.
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
	id := meshnet.TestID(name)
	cat := catalog.New(id.String())
	netw := hub.Join(id, "site-a", GossipState(cat, slog.New(slog.DiscardHandler)))
	t.Cleanup(func() { netw.Close() })
	fc := clock.NewFake(start)
	vcfg := volume.DefaultConfig()
	// One clock for the volumes and the cluster, as on a node: a
	// record's Created and the times the cluster notes compare.
	vcfg.Dir, vcfg.Store, vcfg.Now = t.TempDir(), blockstore.NewMemory(), fc.Now
	vols, err := volume.Open(ctx, vcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vols.Close() })
	p := &fakePusher{}
	cfg := DefaultConfig()
	cfg.Net, cfg.Catalog, cfg.Pusher, cfg.Clock, cfg.Site = netw, cat, p, fc, "site-a"
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
	return info.Root
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
