package heal

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"golang.org/x/time/rate"

	"github.com/weft-mesh/weft/blockmap"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/exchange"
	"github.com/weft-mesh/weft/mesh/memnet"
	"github.com/weft-mesh/weft/mesh/memnet/memnettest"
	"github.com/weft-mesh/weft/placement"
)

// testNet is an in-memory mesh: every node's store, served with the real
// block exchange protocol over memnet, reachable unless down.
type testNet struct {
	mu      sync.Mutex
	net     *memnet.Network
	stores  map[string]*blockstore.Memory // the mesh's
	clients map[string]*exchange.Client   // the mesh's
	sites   map[string]string
	down    map[string]bool
	// accounts are the nodes' redundancy accounts, told of every member
	// taken down or brought back.
	accounts map[string]*Redundancy
}

func newTestNet(t *testing.T, rng *rand.Rand, sites ...string) (*testNet, []string) {
	mesh := memnettest.New(t)
	n := &testNet{net: mesh.Net, stores: mesh.Stores, clients: mesh.Clients,
		sites: map[string]string{}, down: map[string]bool{}, accounts: map[string]*Redundancy{}}
	var ids []string
	for i, site := range sites {
		id := fmt.Sprintf("node-%d-%x", i, rng.Uint64())
		mesh.Add(id, nil)
		n.sites[id] = site
		ids = append(ids, id)
	}
	return n, ids
}

func (n *testNet) members() []placement.Member {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []placement.Member
	for id, site := range n.sites {
		if !n.down[id] {
			out = append(out, placement.Member{ID: id, Site: site})
		}
	}
	return out
}

func (n *testNet) setDown(id string, down bool) {
	n.mu.Lock()
	n.down[id] = down
	accounts := maps.Clone(n.accounts)
	n.mu.Unlock()
	if down {
		n.net.Down(id)
	} else {
		n.net.Up(id)
	}
	live := memberIDs(n.members())
	for _, a := range accounts {
		a.SetMembers(live)
	}
}

// redundancy returns id's redundancy account, made at the first call.
func (n *testNet) redundancy(id string) *Redundancy {
	n.mu.Lock()
	a, ok := n.accounts[id]
	n.mu.Unlock()
	if ok {
		return a
	}
	fs := &FetchingStore{Store: n.stores[id], Self: id, Peers: n.clients[id], Members: n.members}
	a = NewRedundancy(blockmap.New(fs, 64), memberIDs(n.members()))
	n.mu.Lock()
	n.accounts[id] = a
	n.mu.Unlock()
	return a
}

// pusher returns the owner's half of replication on id.
func (n *testNet) pusher(id string) *Pusher {
	return &Pusher{Self: id, Store: n.stores[id], Maps: blockmap.New(n.stores[id], 64), Peers: n.clients[id],
		Members: n.members, Redundancy: n.redundancy(id)}
}

func memberIDs(ms []placement.Member) []string {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return ids
}

// writeDisk stores a random disk of blocks on store and returns its root.
func writeDisk(t *testing.T, rng *rand.Rand, store *blockstore.Memory, blocks int) cid.Cid {
	t.Helper()
	ctx := context.Background()
	var changes []blockmap.Change
	for i := range blocks {
		data := make([]byte, 4096)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		b := blockstore.NewBlock(blockstore.CodecRaw, data)
		if err := store.Put(ctx, b); err != nil {
			t.Fatal(err)
		}
		changes = append(changes, blockmap.Change{Index: uint64(i), CID: b.CID})
	}
	root, err := blockmap.New(store, 64).Update(ctx, cid.Undef, blockmap.Levels(uint64(blocks)), changes)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// node builds the heal pieces of one test node.
func (n *testNet) healer(id string, roots func() []Root) *Healer {
	fs := &FetchingStore{Store: n.stores[id], Self: id, Peers: n.clients[id], Members: n.members}
	return New(Config{
		Self: id, Store: n.stores[id], Maps: blockmap.New(fs, 64), Peers: n.clients[id],
		Members: n.members, Roots: roots, Redundancy: n.redundancy(id), Interval: time.Hour,
	})
}

// allCIDs lists every CID reachable from root.
func allCIDs(t *testing.T, store *blockstore.Memory, root cid.Cid) []cid.Cid {
	var out []cid.Cid
	if err := blockmap.New(store, 64).Mark(context.Background(), root, func(c cid.Cid) bool {
		out = append(out, c)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkPlaced fails unless every data block of cids is on every live member
// of its placement set; with exact, it must be nowhere else but on keep.
func (n *testNet) checkPlaced(t *testing.T, cids []cid.Cid, r int, exact bool, keep string) {
	t.Helper()
	ctx := context.Background()
	members := n.members()
	for _, c := range cids {
		set := placement.Place(c.Hash(), members, r)
		for id, s := range n.stores {
			has, _ := s.Has(ctx, c)
			want := contains(set, id)
			if want && !has {
				t.Fatalf("block %s missing on %s, which is in its placement set", c, id)
			}
			if exact && has && !want && id != keep && c.Type() == blockstore.CodecRaw {
				t.Fatalf("surplus copy of %s left on %s", c, id)
			}
		}
	}
}

// TestHealAfterLoss pushes a disk to its placement sets, takes a node away,
// heals, brings it back, and heals again: every block ends on its full
// placement set, surplus copies are dropped, and nothing is lost.
func TestHealAfterLoss(t *testing.T) {
	ctx := context.Background()
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			net, ids := newTestNet(t, rng, "a", "a", "b", "b", "c")
			owner := ids[0]
			const r = 2
			root := writeDisk(t, rng, net.stores[owner], 300)
			cids := allCIDs(t, net.stores[owner], root)
			pusher := net.pusher(owner)
			if _, err := pusher.Push(ctx, cid.Undef, root, r); err != nil {
				t.Fatal(err)
			}
			net.checkPlaced(t, cids, r, false, owner)

			roots := func(id string) func() []Root {
				return func() []Root { return []Root{{Root: root, Replicas: r, Local: id == owner}} }
			}
			healers := map[string]*Healer{}
			for _, id := range ids {
				healers[id] = net.healer(id, roots(id))
			}
			passAll := func() {
				t.Helper()
				for _, id := range ids {
					if net.down[id] {
						continue
					}
					if err := healers[id].Pass(ctx); err != nil {
						t.Fatalf("pass on %s: %v", id, err)
					}
				}
			}
			// The lost node is a non-owner holding blocks.
			lost := ids[1+rng.IntN(len(ids)-1)]
			net.setDown(lost, true)
			passAll()
			passAll() // the count is what the others held at each pass
			net.checkPlaced(t, cids, r, false, owner)
			for _, id := range ids {
				if id == lost {
					continue
				}
				if n, err := net.redundancy(id).Under(ctx, root, r); err != nil || n != 0 {
					t.Fatalf("%s still sees %d under-replicated blocks after healing (%v)", id, n, err)
				}
			}
			// The owner itself is lost: its disk is still whole elsewhere.
			net.setDown(lost, false)
			passAll() // lost is back: its surplus is handed off and dropped
			passAll() // (second pass: holders confirmed on the first)
			net.checkPlaced(t, cids, r, true, owner)

			// The owner is lost: any other node still reads the whole
			// disk, every block verified, fetched from the placement sets.
			net.setDown(owner, true)
			reader := ids[len(ids)-1]
			fs := &FetchingStore{Store: net.stores[reader], Self: reader, Peers: net.clients[reader], Members: net.members}
			for _, c := range cids {
				if _, err := fs.Get(ctx, c); err != nil {
					t.Fatalf("read %s without the owner: %v", c, err)
				}
			}
		})
	}
}

// TestCorruptBlockReplacedOnRead: a read of a block stored corrupt returns
// a good copy from a peer and replaces the local one.
func TestCorruptBlockReplacedOnRead(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	net, ids := newTestNet(t, rng, "a", "b")
	root := writeDisk(t, rng, net.stores[ids[0]], 8)
	cids := allCIDs(t, net.stores[ids[0]], root)
	for _, c := range cids {
		data, _ := net.stores[ids[0]].Get(ctx, c)
		net.stores[ids[1]].Put(ctx, blockstore.Block{CID: c, Data: data})
	}
	bad := cids[len(cids)-1]
	local := net.stores[ids[1]]
	local.Corrupt(bad)
	fs := &FetchingStore{Store: local, Self: ids[1], Peers: net.clients[ids[1]], Members: net.members}
	data, err := fs.Get(ctx, bad)
	if err != nil {
		t.Fatal(err)
	}
	if err := blockstore.Verify(bad, data); err != nil {
		t.Fatal(err)
	}
	if got, err := local.Get(ctx, bad); err != nil || blockstore.Verify(bad, got) != nil {
		t.Fatalf("after repair the local copy reads %v", err)
	}
	// With the only good copy gone, the error says so.
	net.setDown(ids[0], true)
	if _, err := fs.Get(ctx, cids[0]); err != nil {
		t.Fatalf("local block: %v", err)
	}
	missing := blockstore.NewBlock(blockstore.CodecRaw, []byte("never stored"))
	if _, err := fs.Get(ctx, missing.CID); err == nil {
		t.Fatal("a block nobody holds was returned")
	}
}

// TestHealResumes interrupts a throttled pass, then runs another: the second
// copies only the rest, so the total copied is one copy of what was needed.
func TestHealResumes(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	net, ids := newTestNet(t, rng, "a", "b", "c")
	owner := ids[0]
	root := writeDisk(t, rng, net.stores[owner], 400)
	roots := func() []Root { return []Root{{Root: root, Replicas: 3}} }
	h := New(Config{
		Self: ids[1], Store: net.stores[ids[1]], Maps: blockmap.New(&FetchingStore{Store: net.stores[ids[1]], Self: ids[1], Peers: net.clients[ids[1]], Members: net.members}, 64),
		Peers: net.clients[ids[1]], Members: net.members, Roots: roots, Redundancy: net.redundancy(ids[1]),
		Bandwidth: 1 << 20, Concurrency: 1,
	})
	// 1.6 MB at 1 MiB/s: the first batch (1 MiB) fits in the window, the
	// rest does not.
	short, cancel := context.WithTimeout(ctx, 1200*time.Millisecond)
	err := h.Pass(short)
	cancel()
	first := h.Status().CopiedBytes
	if err == nil || first == 0 || first >= 400*4096 {
		t.Fatalf("interrupted pass: err %v, copied %d bytes; want a partial copy", err, first)
	}
	h.limit.SetLimit(rate.Inf)
	if err := h.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	st := h.Status()
	if st.CopiedBytes != 400*4096 {
		t.Fatalf("copied %d bytes over both passes, want exactly one copy (%d)", st.CopiedBytes, 400*4096)
	}
	if st.Passes != 1 || st.LastError != "" {
		t.Fatalf("status %+v: want one complete pass and no error", st)
	}
	if st.FetchSeconds <= 0 {
		t.Fatalf("fetch_seconds %v after two passes that copied, want their time in fetches", st.FetchSeconds)
	}
	if err := h.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if again := h.Status().FetchSeconds; again != st.FetchSeconds {
		t.Fatalf("a pass that copied nothing moved fetch_seconds from %.3f to %.3f", st.FetchSeconds, again)
	}
}

// TestSyncPushNeedsRNodes: a push for R copies fails with ErrTooFewNodes
// when fewer than R nodes are alive, and succeeds once they are.
func TestSyncPushNeedsRNodes(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(5, 6))
	net, ids := newTestNet(t, rng, "a", "b")
	root := writeDisk(t, rng, net.stores[ids[0]], 20)
	p := net.pusher(ids[0])
	net.setDown(ids[1], true)
	if _, err := p.Push(ctx, cid.Undef, root, 2); err == nil {
		t.Fatal("push for 2 copies with one live node succeeded")
	}
	net.setDown(ids[1], false)
	st, err := p.Push(ctx, cid.Undef, root, 2)
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent != st.Blocks {
		t.Fatalf("push stats %+v: with two nodes every block goes to the other one", st)
	}
	again, err := p.Push(ctx, root, root, 2)
	if err != nil || again.Sent != 0 {
		t.Fatalf("pushing the same root again sent %+v, %v; want nothing", again, err)
	}
	for _, c := range allCIDs(t, net.stores[ids[0]], root) {
		if ok, _ := net.stores[ids[1]].Has(ctx, c); !ok {
			t.Fatalf("%s not on the second node after a sync push", c)
		}
	}
}

// TestOwnerCountsOthersCopiesWithoutTrigger: the owner's pass after a loss
// runs before the new holders copied, and nothing triggers it again; its
// own follow-up pass must still count their copies, long before Interval.
func TestOwnerCountsOthersCopiesWithoutTrigger(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rng := rand.New(rand.NewPCG(3, 7))
	net, ids := newTestNet(t, rng, "a", "a", "b", "b", "c")
	owner := ids[0]
	const r = 2
	root := writeDisk(t, rng, net.stores[owner], 300)
	if _, err := net.pusher(owner).Push(ctx, cid.Undef, root, r); err != nil {
		t.Fatal(err)
	}
	roots := func(id string) func() []Root {
		return func() []Root { return []Root{{Root: root, Replicas: r, Local: id == owner}} }
	}
	healers := map[string]*Healer{}
	for _, id := range ids {
		healers[id] = net.healer(id, roots(id)) // Interval: an hour
	}
	net.setDown(ids[1], true)
	ran := make(chan struct{})
	go func() { defer close(ran); healers[owner].Run(ctx) }()
	healers[owner].Trigger()
	waitFor(t, "the owner's triggered pass", func() bool { return healers[owner].Status().Passes > 0 })
	if n, err := net.redundancy(owner).Under(ctx, root, r); err != nil || n == 0 {
		t.Fatalf("owner counts %d under-replicated blocks before the others healed (%v); the test needs some", n, err)
	}
	for _, id := range ids[2:] {
		if err := healers[id].Pass(ctx); err != nil {
			t.Fatalf("pass on %s: %v", id, err)
		}
	}
	waitFor(t, "the owner to count the new copies", func() bool {
		n, err := net.redundancy(owner).Under(ctx, root, r)
		return err == nil && n == 0
	})
	cancel()
	<-ran
}

// waitFor waits up to ten seconds for ok, failing the test if it never holds.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// failingPeer is the exchange of a node whose calls to one peer fail, and
// whose Puts to the others wait until that failure happened.
type failingPeer struct {
	Peers
	dead   string
	failed chan struct{}
	once   sync.Once
}

func (p *failingPeer) Has(ctx context.Context, peer string, cids []cid.Cid) ([]bool, error) {
	if peer == p.dead {
		p.once.Do(func() { close(p.failed) })
		return nil, errors.New("connection reset")
	}
	return p.Peers.Has(ctx, peer, cids)
}

func (p *failingPeer) Put(ctx context.Context, peer string, bs []blockstore.Block) error {
	<-p.failed
	return p.Peers.Put(ctx, peer, bs)
}

// TestPushGoesOnPastADeadMember: a member of the placement sets dies
// during a push, before it is detected; the push fails, but every live
// member still gets all its blocks (a push that stopped at the first
// failure left them to heal, which copied them a second time).
func TestPushGoesOnPastADeadMember(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(8, 9))
	net, ids := newTestNet(t, rng, "a", "b", "c")
	root := writeDisk(t, rng, net.stores[ids[0]], 50)
	p := net.pusher(ids[0])
	p.Peers = &failingPeer{Peers: p.Peers, dead: ids[2], failed: make(chan struct{})}
	if _, err := p.Push(ctx, cid.Undef, root, 3); err == nil {
		t.Fatal("push with a dead member of the placement sets: got nil error")
	}
	for _, c := range allCIDs(t, net.stores[ids[0]], root) {
		if ok, _ := net.stores[ids[1]].Has(ctx, c); !ok {
			t.Fatalf("%s not on the live member after the push", c)
		}
	}
}

// countingPeers counts the block bytes Get and GetEach brought over the
// wire.
type countingPeers struct {
	Peers
	mu    sync.Mutex
	bytes int
}

func (c *countingPeers) Get(ctx context.Context, peer string, cids []cid.Cid) (map[cid.Cid]blockstore.Block, error) {
	got, err := c.Peers.Get(ctx, peer, cids)
	c.mu.Lock()
	for _, b := range got {
		c.bytes += len(b.Data)
	}
	c.mu.Unlock()
	return got, err
}

func (c *countingPeers) GetEach(ctx context.Context, peer string, cids []cid.Cid, fn func([]blockstore.Block) error) error {
	return c.Peers.GetEach(ctx, peer, cids, func(blocks []blockstore.Block) error {
		c.mu.Lock()
		for _, b := range blocks {
			c.bytes += len(b.Data)
		}
		c.mu.Unlock()
		return fn(blocks)
	})
}

// TestHealCapHoldsOnTheWire: a heal capped far below a batch's size asks
// for no more than the cap allows, instead of fetching a whole batch and
// paying for it afterwards.
func TestHealCapHoldsOnTheWire(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	net, ids := newTestNet(t, rng, "a", "b")
	owner, self := ids[0], ids[1]
	root := writeDisk(t, rng, net.stores[owner], 400)
	roots := func() []Root { return []Root{{Root: root, Replicas: 2}} }
	peers := &countingPeers{Peers: net.clients[self]}
	h := New(Config{
		Self: self, Store: net.stores[self], Maps: blockmap.New(&FetchingStore{Store: net.stores[self], Self: self, Peers: net.clients[self], Members: net.members}, 64),
		Peers: peers, Members: net.members, Roots: roots, Redundancy: net.redundancy(self),
		Bandwidth: 1024, Concurrency: 4,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := h.Pass(ctx); err == nil {
		t.Fatal("a pass of 1.6 MB at 1 KiB/s ended within its window")
	}
	peers.mu.Lock()
	defer peers.mu.Unlock()
	// The first request goes out on the burst; every later one waits for
	// the cap, which allows 1 KiB/s.
	if peers.bytes > rateBurst {
		t.Fatalf("heal capped at 1 KiB/s fetched %d bytes in half a second, want at most the burst (%d)", peers.bytes, rateBurst)
	}
	t.Logf("fetched %d bytes", peers.bytes)
}

// TestHealFullNodeFetchesNothing: a node without room for its share asks
// no peer for blocks it would throw away, and the pass fails with
// ErrNoSpace, which status shows; a store that refuses a batch stops the
// pass the same way after that one batch.
func TestHealFullNodeFetchesNothing(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	net, ids := newTestNet(t, rng, "a", "b")
	owner, self := ids[0], ids[1]
	root := writeDisk(t, rng, net.stores[owner], 2000)
	roots := func() []Root { return []Root{{Root: root, Replicas: 2}} }
	full := func(int64) error { return fmt.Errorf("test: %w", blockstore.ErrNoSpace) }
	for _, tc := range []struct {
		name     string
		room     func(int64) error
		store    Store
		maxFetch int
	}{
		{"no room", full, net.stores[self], 0},
		{"store refuses", nil, refusingStore{net.stores[self]}, fetchBatch * 4096}, // one batch of 4 KiB blocks
	} {
		t.Run(tc.name, func(t *testing.T) {
			peers := &countingPeers{Peers: net.clients[self]}
			h := New(Config{
				Self: self, Store: tc.store, Maps: blockmap.New(&FetchingStore{Store: net.stores[self], Self: self, Peers: net.clients[self], Members: net.members}, 64),
				Peers: peers, Members: net.members, Roots: roots, Redundancy: net.redundancy(self),
				Concurrency: 1, Room: tc.room,
			})
			err := h.Pass(context.Background())
			if !errors.Is(err, blockstore.ErrNoSpace) {
				t.Fatalf("pass on a full node: got %v, want ErrNoSpace", err)
			}
			peers.mu.Lock()
			defer peers.mu.Unlock()
			if peers.bytes > tc.maxFetch {
				t.Fatalf("a full node fetched %d bytes, want at most %d", peers.bytes, tc.maxFetch)
			}
			if st := h.Status(); !strings.Contains(st.LastError, "out of space") {
				t.Fatalf("status after the pass: %+v, want the out-of-space error", st)
			}
		})
	}
}

// refusingStore refuses every put for lack of space.
type refusingStore struct{ Store }

func (s refusingStore) Put(ctx context.Context, b blockstore.Block) error {
	return s.PutMany(ctx, []blockstore.Block{b})
}

func (refusingStore) PutMany(context.Context, []blockstore.Block) error {
	return fmt.Errorf("test: %w", blockstore.ErrNoSpace)
}

// TestHealFetchesAboveTheReserve: a node with 100 MiB above its reserve
// and 4 MiB blocks copied so far still fetches: the room heal asks for is
// one response (exchange.MaxGetPayload), not a whole batch of 4 MiB blocks
// (1 GiB), which would refuse every copy far above the reserve.
func TestHealFetchesAboveTheReserve(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	net, ids := newTestNet(t, rng, "a", "b")
	owner, self := ids[0], ids[1]
	root := writeDisk(t, rng, net.stores[owner], 600)
	roots := func() []Root { return []Root{{Root: root, Replicas: 2}} }
	const aboveReserve = 100 << 20
	room := func(n int64) error {
		if n > aboveReserve {
			return fmt.Errorf("test: %d bytes asked, %d above the reserve: %w", n, aboveReserve, blockstore.ErrNoSpace)
		}
		return nil
	}
	h := New(Config{
		Self: self, Store: net.stores[self], Maps: blockmap.New(&FetchingStore{Store: net.stores[self], Self: self, Peers: net.clients[self], Members: net.members}, 64),
		Peers: net.clients[self], Members: net.members, Roots: roots, Redundancy: net.redundancy(self),
		Concurrency: 1, Room: room,
	})
	h.status.CopiedBlocks, h.status.CopiedBytes = 1, 4<<20 // a 4 MiB block copied before
	if err := h.Pass(context.Background()); err != nil {
		t.Fatalf("pass 100 MiB above the reserve: %v", err)
	}
	if st := h.Status(); st.CopiedBlocks < 600 {
		t.Fatalf("status after the pass: %+v, want the 600 blocks copied", st)
	}
}
