package cluster

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockmap"
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
	n := newTestNode(t, newTestHub(t), "b")
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

// Once a later root is pushed in full, a superseded root is garbage like
// any other: the keeping is bounded by replication, not by time.
func TestGCFreesSupersededRootOnceLaterOnePushed(t *testing.T) {
	n := newTestNode(t, newTestHub(t), "b")
	r0, r1 := supersede(t, n)
	if p := n.Pushed("vm"); p != r1 {
		t.Fatalf("pushed %s, want %s", p, r1)
	}
	old := blocksOf(t, n, r0)
	keep := map[cid.Cid]bool{}
	for _, c := range blocksOf(t, n, r1) {
		keep[c] = true
	}
	gc(t, n)
	for _, c := range old {
		if keep[c] {
			continue
		}
		if ok, _ := n.store.Has(context.Background(), c); ok {
			t.Errorf("block %s of the superseded root %s survived a gc after %s was pushed", c, r0, r1)
		}
	}
	if roots := n.CatalogRoots(); len(roots) != 1 || roots[0] != r1 {
		t.Errorf("catalog roots %v, want only %s", roots, r1)
	}
}
