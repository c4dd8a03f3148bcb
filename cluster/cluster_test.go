package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/heal"
	"github.com/weft-mesh/weft/internal/clock"
	"github.com/weft-mesh/weft/internal/memstat"
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
	store  *blockstore.Memory
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
	store := blockstore.NewMemory()
	vcfg.Dir, vcfg.Store, vcfg.Now = t.TempDir(), store, fc.Now
	// GC keeps the catalog's roots, as on a node (node.NewCore); the
	// cluster is made after the volumes, and GC runs only once it is.
	var cl *Cluster
	vcfg.ExtraRoots = func() []cid.Cid { return cl.CatalogRoots() }
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
	cl = c
	c.Attach(ctx, vols, vols)
	return &testNode{Cluster: c, vols: vols, store: store, clock: fc, pusher: p}
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

// pushEntry is a valid catalog entry that peer pushes.
func pushEntry(peer meshnet.PeerID, disk string) catalog.Entry {
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	return catalog.Entry{Key: catalog.DiskKey(disk), Root: blockstore.Sum(blockstore.CodecRaw, []byte(disk)), Owner: peer.String(), Epoch: 2,
		Version: 3, Writer: peer.String(), Size: 1 << 20, BlockSize: 64 << 10, Replicas: 2, Created: t0, Modified: t0}
}

// pushRaw sends msg to b on the catalog protocol from the member evil and
// reports whether b acknowledged it, within a deadline.
func pushRaw(t *testing.T, evil meshnet.Network, b meshnet.PeerID, msg []byte, trickle time.Duration) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := evil.Open(ctx, b, CatalogProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	go func() {
		if trickle == 0 {
			_, _ = s.Write(msg)
			return
		}
		for _, c := range msg {
			if _, err := s.Write([]byte{c}); err != nil {
				return
			}
			time.Sleep(trickle)
		}
	}()
	ack := make(chan bool, 1)
	go func() {
		var one [1]byte
		_, err := io.ReadFull(s, one[:])
		ack <- err == nil && one[0] == 1
	}()
	select {
	case ok := <-ack:
		return ok
	case <-ctx.Done():
		t.Fatal("no answer nor reset within 10 s")
		return false
	}
}

// An admitted member pushing malformed, oversized or trickled catalog
// messages gets its stream reset and the catalog is untouched: a message
// with one bad entry among good ones merges none of them.
func TestHostileCatalogPushesAreRefused(t *testing.T) {
	hub := newTestHub(t)
	b := newTestNode(t, hub, "b")
	evil := hub.join("evil")
	good, err := catalogPushMessage([]catalog.Entry{pushEntry(evil.Self(), "vm1")})
	if err != nil {
		t.Fatal(err)
	}
	// The good entry, then a second one that is an empty map: the array
	// header says two.
	bad := bytes.Clone(good)
	bad[4] = 0x82
	bad = append(bad, 0xa0)
	binary.BigEndian.PutUint32(bad, uint32(len(bad)-4))
	oversized := binary.BigEndian.AppendUint32(nil, maxCatalogPush+1)

	// Only the trickling sender meets the serve timeout: the others are
	// refused on what they sent, and would hang to pushRaw's 10 s
	// deadline if a check were missing.
	for _, tc := range []struct {
		name     string
		msg      []byte
		trickle  time.Duration
		serveFor time.Duration
	}{
		{"a malformed entry among good ones", bad, 0, time.Minute},
		{"a size over the limit", oversized, 0, time.Minute},
		{"a sender trickling a byte every 50 ms", good, 50 * time.Millisecond, 300 * time.Millisecond},
	} {
		b.pushes.serveFor = tc.serveFor
		if pushRaw(t, evil, b.self, tc.msg, tc.trickle) {
			t.Errorf("%s: acknowledged, want the stream reset", tc.name)
		}
		if n := len(b.cat.Snapshot()); n != 0 {
			t.Fatalf("%s: the catalog holds %d entries, want none", tc.name, n)
		}
	}
	if !pushRaw(t, evil, b.self, good, 0) {
		t.Fatal("a good push after the hostile ones: not acknowledged")
	}
	if _, ok := b.cat.Get(catalog.DiskKey("vm1")); !ok {
		t.Fatal("a good push after the hostile ones: entry not merged")
	}
}

// An admitted member opening many catalog pushes at once, each stating a
// full message and sending all of it but its last byte, has at most
// maxPushesPerPeer of them read: only their writes complete, the others'
// stop at what the transport buffers (memnet's pipe: 1 MiB, a little less
// than the message). The node's heap grows by what the read ones hold
// and the transport buffers of the others, and another member's push
// goes through.
func TestManyCatalogPushesAreBounded(t *testing.T) {
	const streams = 4 * maxPushesPerPeer
	hub := newTestHub(t)
	b := newTestNode(t, hub, "b")
	// The pushes waiting for a turn leave at the serve timeout, not when
	// their stream goes: the test's end waits for them.
	b.pushes.serveFor = 10 * time.Second
	a := newTestNode(t, hub, "a")
	evil := hub.join("evil")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	before := memstat.LiveHeap()
	most := append(binary.BigEndian.AppendUint32(nil, maxCatalogPush), make([]byte, maxCatalogPush-1)...)
	var wg sync.WaitGroup
	var written atomic.Int64 // attacking streams whose bytes all went
	for range streams {
		s, err := evil.Open(ctx, b.self, CatalogProtocol)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Write(most); err == nil {
				written.Add(1)
			}
		}()
		defer func() { _ = meshnet.Abort(s); wg.Wait() }()
	}
	for {
		callers, held := b.pushes.turns.Load(evil.Self().String())
		if callers == streams && held == maxPushesPerPeer && written.Load() == maxPushesPerPeer {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("attack not in place: %d pushes waiting or read, %d read, %d taken in whole, want %d, %d and %d", callers, held, written.Load(), streams, maxPushesPerPeer, maxPushesPerPeer)
		}
		time.Sleep(10 * time.Millisecond)
	}
	during := memstat.LiveHeap()
	if n := written.Load(); n != maxPushesPerPeer {
		t.Fatalf("pushes taken in whole: %d, want %d (the others wait unread)", n, maxPushesPerPeer)
	}
	// A push read holds its message (io.ReadAll's buffer: up to twice the
	// size); every stream holds what its memnet pipe buffers (1 MiB in a
	// buffer of up to twice that).
	bound := uint64(maxPushesPerPeer*2*maxCatalogPush + streams*2<<20 + 16<<20)
	grew := int64(during) - int64(before)
	t.Logf("heap grew by %d MiB under %d pushes (bound %d MiB)", grew>>20, streams, bound>>20)
	if grew > int64(bound) {
		t.Fatalf("heap grew by %d MiB under %d pushes, want at most %d MiB", grew>>20, streams, bound>>20)
	}

	msg, err := catalogPushMessage([]catalog.Entry{pushEntry(a.self, "honest")})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.pushTo(ctx, b.self, msg); err != nil {
		t.Fatalf("another member's push during the attack: %v", err)
	}
	if _, ok := b.cat.Get(catalog.DiskKey("honest")); !ok {
		t.Fatal("another member's push during the attack: entry not merged")
	}
}
