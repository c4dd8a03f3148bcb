package heal

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockmap"
	"github.com/weft-mesh/weft/blockstore"
)

func wantUnder(t *testing.T, r *Redundancy, root cid.Cid, replicas int, want int, when string) {
	t.Helper()
	got, err := r.Under(context.Background(), root, replicas)
	if err != nil {
		t.Fatalf("%s: under %s: %v", when, root, err)
	}
	if got != int64(want) {
		t.Fatalf("%s: got %d blocks under-replicated, want %d", when, got, want)
	}
}

// TestRedundancyCountsOnlyConfirmedCopies: a root just committed counts
// every block (map nodes included) until R live members confirmed it; a
// member that is lost takes its confirmations with it.
func TestRedundancyCountsOnlyConfirmedCopies(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	store := blockstore.NewMemory()
	t.Cleanup(func() { store.Close() })
	root := writeDisk(t, rng, store, 40)
	cids := allCIDs(t, store, root)
	all := len(cids)
	if all <= 40 {
		t.Fatalf("root has %d blocks, want the 40 data blocks and its map nodes", all)
	}
	r := NewRedundancy(blockmap.New(store, 64), []string{"a", "b", "c"})

	wantUnder(t, r, root, 2, all, "just committed")
	r.Confirm("a", cids)
	wantUnder(t, r, root, 2, all, "the owner's copy alone")
	r.Confirm("b", cids[:10])
	wantUnder(t, r, root, 2, all-10, "b acknowledged 10")
	r.Confirm("stranger", cids)
	wantUnder(t, r, root, 2, all-10, "a node outside the mesh confirmed all")
	r.Confirm("c", cids[10:])
	wantUnder(t, r, root, 2, 0, "every block on two members")
	wantUnder(t, r, root, 3, all, "the same copies, counted for R=3")

	r.SetMembers([]string{"a", "c"}) // b died
	wantUnder(t, r, root, 2, 10, "b lost")
	r.Confirm("b", cids)
	wantUnder(t, r, root, 2, 10, "a dead member's confirmation")
	asked := r.Clock()
	r.Observe(cids[0], []string{"a", "c"}, asked)
	wantUnder(t, r, root, 2, 9, "a heal pass saw one block on a and c")
	r.Observe(cids[len(cids)-1], []string{"a"}, asked)
	wantUnder(t, r, root, 2, 10, "a heal pass saw c lose a block")

	// An answer older than a confirmation does not undo it: a pass asked,
	// then the push delivered, then the pass recorded its answers.
	asked = r.Clock()
	r.Confirm("c", cids[1:2])
	r.Observe(cids[1], []string{"a"}, asked)
	wantUnder(t, r, root, 2, 9, "a push confirmed c after the pass asked")
	r.Observe(cids[1], []string{"a"}, r.Clock())
	wantUnder(t, r, root, 2, 10, "a later pass saw c without it")

	// A root the catalog dropped is forgotten with its confirmations.
	r.Retain(nil)
	wantUnder(t, r, root, 2, all, "forgotten, then asked again")
}

// TestPushConfirmsRedundancy: the owner's push makes a new root count as
// replicated only once every block is on R members of its placement set;
// losing one of them raises the count, and a heal pass brings it to zero.
func TestPushConfirmsRedundancy(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(13, 14))
	net, ids := newTestNet(t, rng, "a", "b", "c")
	owner := ids[0]
	const r = 2
	root := writeDisk(t, rng, net.stores[owner], 200)
	cids := allCIDs(t, net.stores[owner], root)
	acct := net.redundancy(owner)
	wantUnder(t, acct, root, r, len(cids), "committed, not pushed")

	if _, err := net.pusher(owner).Push(ctx, cid.Undef, root, r); err != nil {
		t.Fatal(err)
	}
	wantUnder(t, acct, root, r, 0, "pushed")
	net.checkPlaced(t, cids, r, false, owner)

	// The non-owner holding the most blocks is lost.
	lost, most := "", -1
	for _, id := range ids[1:] {
		n := 0
		for _, c := range cids {
			if ok, _ := net.stores[id].Has(ctx, c); ok {
				n++
			}
		}
		if n > most {
			lost, most = id, n
		}
	}
	net.setDown(lost, true)
	if most == 0 {
		t.Fatal("no other node holds a block of the root")
	}
	got, err := acct.Under(ctx, root, r)
	if err != nil || got == 0 {
		t.Fatalf("after losing a holder of %d blocks: %d under-replicated (%v), want more than 0", most, got, err)
	}

	roots := func() []Root { return []Root{{Root: root, Replicas: r, Local: true}} }
	for _, id := range ids {
		if id != lost {
			if err := net.healer(id, roots).Pass(ctx); err != nil {
				t.Fatalf("pass on %s: %v", id, err)
			}
		}
	}
	// The owner's pass asks the new placement sets, which the other
	// node's pass filled.
	if err := net.healer(owner, roots).Pass(ctx); err != nil {
		t.Fatal(err)
	}
	wantUnder(t, acct, root, r, 0, "healed")
}
