package blockmap

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
)

func dataCID(i uint64) cid.Cid {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], i)
	return blockstore.Sum(blockstore.CodecRaw, b[:])
}

func TestLevels(t *testing.T) {
	for _, tc := range []struct {
		blocks uint64
		want   int
	}{{0, 1}, {1, 1}, {256, 1}, {257, 2}, {65536, 2}, {65537, 3}, {1 << 24, 3}, {1<<24 + 1, 4}} {
		if got := Levels(tc.blocks); got != tc.want {
			t.Errorf("Levels(%d) = %d, want %d", tc.blocks, got, tc.want)
		}
	}
}

// TestUpdateMatchesModel applies random changes in random batches and checks
// every lookup, walk and count against a plain map, and that the root only
// depends on the content.
func TestUpdateMatchesModel(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	ctx := context.Background()
	const blocks = 70000 // three levels
	levels := Levels(blocks)
	maps := New(blockstore.NewMemory(), 64)
	model := map[uint64]cid.Cid{}
	root := cid.Undef
	for round := 0; round < 40; round++ {
		var changes []Change
		for range rng.IntN(300) + 1 {
			idx := rng.Uint64N(blocks)
			if round > 0 && round%7 == 0 { // cluster changes so whole subtrees empty out
				idx = rng.Uint64N(600)
			}
			c := cid.Undef
			if rng.IntN(3) > 0 {
				c = dataCID(rng.Uint64N(1000))
			}
			changes = append(changes, Change{Index: idx, CID: c})
			if c.Defined() {
				model[idx] = c
			} else {
				delete(model, idx)
			}
		}
		var err error
		if root, err = maps.Update(ctx, root, levels, changes); err != nil {
			t.Fatal(err)
		}
	}
	for idx := range uint64(blocks) {
		got, err := maps.Lookup(ctx, root, levels, idx)
		if err != nil {
			t.Fatal(err)
		}
		if want := model[idx]; !got.Equals(want) && (got.Defined() || want.Defined()) {
			t.Fatalf("block %d: got %v, want %v", idx, got, want)
		}
	}
	var walked int
	last := int64(-1)
	err := maps.Walk(ctx, root, levels, 0, blocks, func(idx uint64, c cid.Cid) error {
		if int64(idx) <= last {
			t.Fatalf("walk: index %d after %d", idx, last)
		}
		last = int64(idx)
		if !model[idx].Equals(c) {
			t.Fatalf("walk: block %d = %v, want %v", idx, c, model[idx])
		}
		walked++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if walked != len(model) {
		t.Fatalf("walk visited %d blocks, want %d", walked, len(model))
	}
	if n, err := maps.Count(ctx, root); err != nil || n != uint64(len(model)) {
		t.Fatalf("count = %d, %v; want %d", n, err, len(model))
	}

	// The same content built in one batch, from a fresh cache, gives the
	// same root: the encoding is deterministic.
	var all []Change
	for idx, c := range model {
		all = append(all, Change{Index: idx, CID: c})
	}
	fresh := New(blockstore.NewMemory(), 16)
	root2, err := fresh.Update(ctx, cid.Undef, levels, all)
	if err != nil {
		t.Fatal(err)
	}
	if !root2.Equals(root) {
		t.Fatalf("root from one batch %s, want %s", root2, root)
	}
}

func TestEmptyMapHasNoRoot(t *testing.T) {
	ctx := context.Background()
	maps := New(blockstore.NewMemory(), 16)
	root, err := maps.Update(ctx, cid.Undef, 2, []Change{{Index: 5, CID: dataCID(1)}, {Index: 3000, CID: dataCID(2)}})
	if err != nil || !root.Defined() {
		t.Fatalf("update: %v, %v", root, err)
	}
	root, err = maps.Update(ctx, root, 2, []Change{{Index: 5}, {Index: 3000}})
	if err != nil {
		t.Fatal(err)
	}
	if root.Defined() {
		t.Fatalf("root of an emptied map = %s, want undefined", root)
	}
}

func TestWalkRange(t *testing.T) {
	ctx := context.Background()
	maps := New(blockstore.NewMemory(), 16)
	var changes []Change
	for i := uint64(0); i < 1000; i += 3 {
		changes = append(changes, Change{Index: i, CID: dataCID(i)})
	}
	root, err := maps.Update(ctx, cid.Undef, 2, changes)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	if err := maps.Walk(ctx, root, 2, 250, 262, func(i uint64, _ cid.Cid) error { got = append(got, i); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []uint64{252, 255, 258, 261}
	if len(got) != len(want) {
		t.Fatalf("walk [250,262) = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("walk [250,262) = %v, want %v", got, want)
		}
	}
}

func TestRefusesOutOfRangeAndWrongLevels(t *testing.T) {
	ctx := context.Background()
	maps := New(blockstore.NewMemory(), 16)
	if _, err := maps.Update(ctx, cid.Undef, 1, []Change{{Index: 256, CID: dataCID(1)}}); err == nil {
		t.Fatal("update of index 256 in a one-level map: got nil error")
	}
	root, err := maps.Update(ctx, cid.Undef, 1, []Change{{Index: 1, CID: dataCID(1)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := maps.Lookup(ctx, root, 2, 1); err == nil {
		t.Fatal("lookup with the wrong number of levels: got nil error")
	}
}

func TestMarkVisitsNodesAndData(t *testing.T) {
	ctx := context.Background()
	maps := New(blockstore.NewMemory(), 16)
	root, err := maps.Update(ctx, cid.Undef, 2, []Change{{Index: 1, CID: dataCID(1)}, {Index: 600, CID: dataCID(2)}})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[cid.Cid]bool{}
	if err := maps.Mark(ctx, root, func(c cid.Cid) bool { seen[c] = true; return true }); err != nil {
		t.Fatal(err)
	}
	// root + two leaves + two data blocks
	if len(seen) != 5 || !seen[root] || !seen[dataCID(1)] || !seen[dataCID(2)] {
		t.Fatalf("mark saw %d CIDs (%v), want root, 2 leaves, 2 data blocks", len(seen), seen)
	}
}
