package heal

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/blockstore/storetest"
)

// TestRepairScrubbedBlocks: of the blocks a scrub finds corrupt, Repair
// replaces every one another member holds with its verified copy, and
// reports each one no member holds as not found, leaving it corrupt.
func TestRepairScrubbedBlocks(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(5, 6))
	net, ids := newTestNet(t, rng, "a", "b")
	holder := net.stores[ids[0]]
	local, err := blockstore.Open(t.TempDir(), blockstore.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { local.Close() })
	const held, orphans = 6, 3
	var blocks []blockstore.Block
	for i := range held + orphans {
		b := storetest.NewBlock(rng, 4096+i)
		blocks = append(blocks, b)
		if err := local.Put(ctx, b); err != nil {
			t.Fatal(err)
		}
		if i < held {
			if err := holder.Put(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		if err := storetest.CorruptDisk(local, b.CID); err != nil {
			t.Fatal(err)
		}
	}
	var bad []cid.Cid
	if _, err := blockstore.Scrub(ctx, local, func(c cid.Cid, _ error) { bad = append(bad, c) }); err != nil {
		t.Fatal(err)
	}
	if len(bad) != held+orphans {
		t.Fatalf("scrub found %d corrupt blocks, want %d", len(bad), held+orphans)
	}
	fs := &FetchingStore{Store: local, Self: ids[1], Peers: net.clients[ids[1]], Members: net.members}
	repaired, unrepairable := 0, 0
	for _, c := range bad {
		switch err := fs.Repair(ctx, c); {
		case err == nil:
			repaired++
		case errors.Is(err, blockstore.ErrNotFound):
			unrepairable++
		default:
			t.Fatalf("repair %s: %v, want nil or not found", c, err)
		}
	}
	if repaired != held || unrepairable != orphans {
		t.Fatalf("repaired %d, unrepairable %d; want %d and %d", repaired, unrepairable, held, orphans)
	}
	for i, b := range blocks {
		data, err := local.Get(ctx, b.CID)
		if i < held && (err != nil || string(data) != string(b.Data)) {
			t.Fatalf("held block %d after repair: %v, want its good copy", i, err)
		}
		if i >= held && !errors.Is(err, blockstore.ErrCorrupt) {
			t.Fatalf("orphan block %d after repair: %v, want still corrupt", i, err)
		}
	}
}

// fullStore is a Memory store on a full device: every put is refused.
type fullStore struct{ *blockstore.Memory }

func (s fullStore) Put(ctx context.Context, b blockstore.Block) error {
	return s.PutMany(ctx, []blockstore.Block{b})
}

func (s fullStore) PutMany(context.Context, []blockstore.Block) error {
	return fmt.Errorf("put: %w", blockstore.ErrNoSpace)
}

// TestFetchingStoreReadsOnAFullStore: a block fetched from the mesh is
// returned even when the store has no room to keep it (gc's mark reads
// map nodes so on a full node), while Repair, whose point is the kept
// copy, says it has not repaired it.
func TestFetchingStoreReadsOnAFullStore(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 8))
	net, ids := newTestNet(t, rng, "a", "b")
	b := storetest.NewBlock(rng, 4096)
	if err := net.stores[ids[0]].Put(ctx, b); err != nil {
		t.Fatal(err)
	}
	full := fullStore{Memory: net.stores[ids[1]]}
	fs := &FetchingStore{Store: full, Self: ids[1], Peers: net.clients[ids[1]], Members: net.members}
	data, err := fs.Get(ctx, b.CID)
	if err != nil || string(data) != string(b.Data) {
		t.Fatalf("Get of a remote block on a full store: %v, want the block", err)
	}
	if ok, _ := full.Has(ctx, b.CID); ok {
		t.Fatal("a full store kept the fetched block")
	}
	if err := fs.Repair(ctx, b.CID); !errors.Is(err, blockstore.ErrNoSpace) {
		t.Fatalf("Repair on a full store: %v, want out of space", err)
	}
}

// TestRepairOnAFullStoreKeepsTheCorruptCopy: Repair of a corrupt block on
// a store with no room for the good copy reports it not repaired and
// leaves the corrupt copy in place (still found by the next scrub), rather
// than deleting it and losing the block.
func TestRepairOnAFullStoreKeepsTheCorruptCopy(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(9, 10))
	net, ids := newTestNet(t, rng, "a", "b")
	b := storetest.NewBlock(rng, 4096)
	local := net.stores[ids[1]]
	for _, s := range []*blockstore.Memory{net.stores[ids[0]], local} {
		if err := s.Put(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	local.Corrupt(b.CID)
	full := fullStore{Memory: local}
	fs := &FetchingStore{Store: full, Self: ids[1], Peers: net.clients[ids[1]], Members: net.members}
	if err := fs.Repair(ctx, b.CID); !errors.Is(err, blockstore.ErrNoSpace) {
		t.Fatalf("Repair of a corrupt block on a full store: %v, want out of space", err)
	}
	if ok, err := local.Has(ctx, b.CID); !ok || err != nil {
		t.Fatalf("Has after the failed repair = %v, %v; want the corrupt copy kept", ok, err)
	}
	if _, err := local.Get(ctx, b.CID); !errors.Is(err, blockstore.ErrCorrupt) {
		t.Fatalf("Get after the failed repair: %v, want still corrupt", err)
	}
}
