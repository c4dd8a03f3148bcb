package heal

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockmap"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/exchange"
)

// framePeers records which of the exchange's two fetch paths a healer
// takes: Get reads every response into a fresh buffer of its own,
// GetEach into the stream's reused frame buffer.
type framePeers struct {
	*exchange.Client
	mu           sync.Mutex
	gets, eaches int
}

func (p *framePeers) Get(ctx context.Context, peer string, cids []cid.Cid) (map[cid.Cid]blockstore.Block, error) {
	p.mu.Lock()
	p.gets++
	p.mu.Unlock()
	return p.Client.Get(ctx, peer, cids)
}

func (p *framePeers) GetEach(ctx context.Context, peer string, cids []cid.Cid, fn func([]blockstore.Block) error) error {
	p.mu.Lock()
	p.eaches++
	p.mu.Unlock()
	return p.Client.GetEach(ctx, peer, cids, fn)
}

// countingStore counts the presence checks a healer makes of its store.
type countingStore struct {
	*blockstore.Memory
	mu           sync.Mutex
	has, hasMany int
}

func (s *countingStore) Has(ctx context.Context, c cid.Cid) (bool, error) {
	s.mu.Lock()
	s.has++
	s.mu.Unlock()
	return s.Memory.Has(ctx, c)
}

func (s *countingStore) HasMany(ctx context.Context, cids []cid.Cid) ([]bool, error) {
	s.mu.Lock()
	s.hasMany++
	s.mu.Unlock()
	return s.Memory.HasMany(ctx, cids)
}

// TestHealCopiesThroughReusedFrames: heal stores each response while it
// sits in the exchange's reused frame buffer (GetEach) instead of reading
// every 16 MiB response into a fresh buffer (Get), and checks which blocks
// it holds with one HasMany per pass rather than a Has per block: the
// copy phase after a loss was bound by the receiver's CPU.
func TestHealCopiesThroughReusedFrames(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(11, 12))
	net, ids := newTestNet(t, rng, "a", "b")
	owner, self := ids[0], ids[1]
	root := writeDisk(t, rng, net.stores[owner], 300)
	cids := allCIDs(t, net.stores[owner], root)
	roots := func() []Root { return []Root{{Root: root, Replicas: 2}} }
	peers := &framePeers{Client: net.clients[self]}
	store := &countingStore{Memory: net.stores[self]}
	h := New(Config{
		Self: self, Store: store, Maps: blockmap.New(&FetchingStore{Store: net.stores[self], Self: self, Peers: net.clients[self], Members: net.members}, 64),
		Peers: peers, Members: net.members, Roots: roots, Redundancy: net.redundancy(self), Interval: time.Hour,
	})
	for range 2 { // the first pass copies everything, the second finds nothing missing
		if err := h.Pass(ctx); err != nil {
			t.Fatal(err)
		}
	}
	net.checkPlaced(t, cids, 2, false, "")
	data := 0 // map nodes come with the walk, not the copy
	for _, c := range cids {
		if c.Type() == blockstore.CodecRaw {
			data++
		}
	}
	if st := h.Status(); st.CopiedBlocks != int64(data) {
		t.Fatalf("copied %d blocks, want %d (each data block of the disk once)", st.CopiedBlocks, data)
	}
	if peers.gets != 0 || peers.eaches == 0 {
		t.Fatalf("heal fetched with %d Gets (a fresh buffer per response) and %d GetEach calls, want only GetEach", peers.gets, peers.eaches)
	}
	if store.has != 0 || store.hasMany != 2 {
		t.Fatalf("two passes checked the store with %d Has and %d HasMany calls, want 0 and 2", store.has, store.hasMany)
	}
}
