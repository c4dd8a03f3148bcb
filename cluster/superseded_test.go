package cluster

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockmap"
	"github.com/weft-mesh/weft/heal"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
)

// supersede makes disk vm on n (one 64 KiB block) at a root r0, publishes
// it and waits for its push to end, then overwrites the block, commits and
// publishes the new root r1 and waits for that push too: the owner moved
// on from a root the other members may still know as the disk's.
func supersede(t *testing.T, n *testNode) (r0, r1 cid.Cid) {
	t.Helper()
	ctx := context.Background()
	r0 = n.importDisk(t, "vm", 1, "old!")
	n.Reconcile(ctx) // publishes r0 and starts its push
	waitPushEnded(t, n, r0)
	h, err := n.vols.Head("vm")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt(bytes.Repeat([]byte("new!"), 1<<14), 0); err != nil {
		t.Fatal(err)
	}
	info, err := n.vols.Commit(ctx, "vm")
	if err != nil {
		t.Fatal(err)
	}
	r1 = info.Root
	n.Reconcile(ctx) // publishes r1 in this node's catalog
	if e, _ := n.cat.Get(catalog.DiskKey("vm")); e.Root != r1 {
		t.Fatalf("the catalog names %s, want the new root %s", e.Root, r1)
	}
	waitPushEnded(t, n, r1)
	return r0, r1
}

// waitPushEnded waits until the async push of root ended, confirmed or
// left to heal.
func waitPushEnded(t *testing.T, n *testNode, root cid.Cid) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n.mu.Lock()
		done := !n.pushing["vm"] && (n.pushed["vm"] == root || n.tried["vm"] == root)
		n.mu.Unlock()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the async push of %s did not end", root)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// blocksOf returns every block root reaches, failing if a map node is
// missing from n's store.
func blocksOf(t *testing.T, n *testNode, root cid.Cid) []cid.Cid {
	t.Helper()
	var out []cid.Cid
	seen := map[cid.Cid]bool{}
	err := blockmap.New(n.store, 0).Mark(context.Background(), root, func(c cid.Cid) bool {
		if seen[c] {
			return false
		}
		seen[c] = true
		out = append(out, c)
		return true
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return out
}

func gc(t *testing.T, n *testNode) {
	t.Helper()
	if _, err := n.vols.GC(context.Background()); err != nil {
		t.Fatalf("gc: %v", err)
	}
}

// Torture seed 21: an owner paused past the failure detector's timeout
// resumes, commits its head past r0, the root it last published (whose
// push never finished, so its blocks were here only), and publishes r1 in
// its own catalog; a collection then runs before the take that fenced it
// at r0 reaches it. r0 was no root this node knew any more: the sweep
// deleted the only copies of the blocks r1 overwrote. The take's record
// names r0, the give-up keeps r1 as the fenced replica, and the disk's
// root could no longer be read anywhere. A root this node published and
// then superseded is kept until a later root is pushed in full.
func TestGCKeepsSupersededRootOthersMayTake(t *testing.T) {
	hub := newTestHub(t)
	n := newTestNode(t, hub, "b")
	hub.join("c") // the taker, cut off from b for the pushes
	n.pusher.err = errors.New("placement set unreachable")
	r0, r1 := supersede(t, n)
	gc(t, n) // before the take reaches this node
	taker := meshnet.TestID("c").String()
	n.cat.Merge([]catalog.Entry{written(t, "c", catalog.Entry{
		Key: catalog.DiskKey("vm"), Owner: taker, Epoch: 2, Root: r0, Size: 64 << 10, BlockSize: 64 << 10, Replicas: 1,
	})})
	n.Reconcile(context.Background()) // gives the disk up, keeping r1
	if reps := n.replicas(t, "vm"); len(reps) != 1 {
		t.Fatalf("replicas after the give-up: %v, want the fenced one", reps)
	}
	gc(t, n)
	for _, root := range []cid.Cid{r0, r1} {
		for _, c := range blocksOf(t, n, root) {
			if ok, err := n.store.Has(context.Background(), c); err != nil || !ok {
				t.Errorf("block %s of %s is gone (err %v): the taken disk's root (%s) or the fenced replica (%s) lost it", c, root, err, r0, r1)
			}
		}
	}
}

// A superseded root is kept no longer than needed: once a later root is
// pushed in full (its record went out before), once supersededGrace has
// passed, or at once in a mesh of one node, where nobody can take the disk
// at it. Then its blocks are garbage like any other's.
func TestGCFreesSupersededRoot(t *testing.T) {
	for _, tt := range []struct {
		name     string
		pushErr  error
		alone    bool
		waitOver bool
	}{
		{name: "later root pushed"},
		{name: "grace passed", pushErr: errors.New("placement set unreachable"), waitOver: true},
		{name: "no other member", pushErr: heal.ErrTooFewNodes, alone: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hub := newTestHub(t)
			n := newTestNode(t, hub, "b")
			if !tt.alone {
				hub.join("c")
			}
			n.pusher.err = tt.pushErr
			r0, r1 := supersede(t, n)
			old := blocksOf(t, n, r0)
			live := map[cid.Cid]bool{}
			for _, c := range blocksOf(t, n, r1) {
				live[c] = true
			}
			if tt.waitOver {
				gc(t, n)
				if ok, _ := n.store.Has(context.Background(), r0); !ok {
					t.Fatalf("the superseded root %s was collected within its grace", r0)
				}
				n.clock.Advance(supersededGrace)
			}
			gc(t, n)
			for _, c := range old {
				if ok, _ := n.store.Has(context.Background(), c); ok && !live[c] {
					t.Errorf("block %s of the superseded root %s survived the gc", c, r0)
				}
			}
			if roots := n.CatalogRoots(); len(roots) != 1 || roots[0] != r1 {
				t.Errorf("catalog roots %v, want only %s", roots, r1)
			}
		})
	}
}
