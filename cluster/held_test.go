package cluster

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockmap"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
)

// commitOver overwrites disk vm's one block on n with data, commits it,
// publishes the new root in n's catalog and waits for its async push to
// end (confirmed, or left to heal when n.pusher fails).
func commitOver(t *testing.T, n *testNode, data string) cid.Cid {
	t.Helper()
	ctx := context.Background()
	h, err := n.vols.Head("vm")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt(bytes.Repeat([]byte(data), 1<<14), 0); err != nil {
		t.Fatal(err)
	}
	info, err := n.vols.Commit(ctx, "vm")
	if err != nil {
		t.Fatal(err)
	}
	n.Reconcile(ctx) // publishes the new root
	waitPushEnded(t, n, info.Root)
	n.Reconcile(ctx) // publishes it as held if the push was confirmed
	return info.Root
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

// waitPushes waits until n's pusher was asked to push root want times.
func waitPushes(t *testing.T, n *testNode, root cid.Cid, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n.pushesOf(root) < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s pushed %d times, want %d", root, n.pushesOf(root), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pushesOf counts the pushes of root asked of n's pusher.
func (n *testNode) pushesOf(root cid.Cid) int {
	n.pusher.mu.Lock()
	defer n.pusher.mu.Unlock()
	count := 0
	for _, r := range n.pusher.pushes {
		if r == root {
			count++
		}
	}
	return count
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
// had published a root r1 whose push was not done, so some of its blocks
// were on that owner alone. Another node took the disk at r1; the owner
// woke, committed r2 over r1 and collected r1's overwritten blocks before
// the take reached it: the disk's root could no longer be read anywhere.
// A take starts from the held root instead, r0, the newest one the
// placement sets confirmed in full, and the writes after it stay in the
// old owner's fenced replica.
func TestTakeStartsFromTheHeldRoot(t *testing.T) {
	ctx := context.Background()
	hub := newTestHub(t)
	n := newTestNode(t, hub, "b")
	hub.join("c")
	r0 := n.importDisk(t, "vm", 1, "old!")
	n.Reconcile(ctx) // publishes r0 and pushes it in full
	waitPushEnded(t, n, r0)
	n.Reconcile(ctx)
	if e, _ := n.cat.Get(catalog.DiskKey("vm")); e.Root != r0 || e.Held != r0 {
		t.Fatalf("after a confirmed push the record names root %s, held %s; want both %s", e.Root, e.Held, r0)
	}

	n.pusher.err = errors.New("placement set unreachable") // b is cut off from here on
	r1 := commitOver(t, n, "mid!")
	published, _ := n.cat.Get(catalog.DiskKey("vm"))
	if published.Root != r1 || published.Held != r0 {
		t.Fatalf("after an unconfirmed push the record names root %s, held %s; want root %s, held %s", published.Root, published.Held, r1, r0)
	}
	// c, which merged that record, sees b dead and takes the disk.
	taken, err := DecideTake("vm", published, true, meshnet.TestID("c"), false, false)
	if err != nil {
		t.Fatal(err)
	}
	if taken.Root != r0 {
		t.Fatalf("the take names root %s, want the held root %s (r1 %s was never confirmed)", taken.Root, r0, r1)
	}
	r1Blocks := blocksOf(t, n, r1)
	r2 := commitOver(t, n, "new!") // b wakes and writes on before the take reaches it
	kept := append(blocksOf(t, n, r0), blocksOf(t, n, r2)...)
	gc(t, n)
	for _, c := range r1Blocks {
		if !slices.Contains(kept, c) {
			if ok, _ := n.store.Has(ctx, c); ok {
				t.Errorf("block %s of the superseded, unconfirmed root %s survived the gc: nothing here names it", c, r1)
			}
		}
	}
	before := n.pushesOf(r2) // r2 was the head's root: its own push was tried
	n.cat.Merge([]catalog.Entry{written(t, "c", taken)})
	n.Reconcile(ctx) // gives the disk up, keeping r2 as a fenced replica
	if reps := n.replicas(t, "vm"); len(reps) != 1 {
		t.Fatalf("replicas after the give-up: %v, want the fenced one", reps)
	}
	// Its new blocks are here alone: pushed at once, not left to heal.
	waitPushes(t, n, r2, before+1)
	gc(t, n)
	for _, root := range []cid.Cid{r0, r2} {
		for _, c := range blocksOf(t, n, root) {
			if ok, err := n.store.Has(ctx, c); err != nil || !ok {
				t.Errorf("block %s of %s is gone (err %v): the taken disk's root (%s) or the fenced replica (%s) lost it", c, root, err, r0, r2)
			}
		}
	}
}

// GC and heal keep a disk's held root beside its newest one, and only
// while the newest is not confirmed: once it is, the held root moves to it
// and the older one's blocks are garbage like any other's.
func TestHeldRootKeptUntilTheNewestIsConfirmed(t *testing.T) {
	ctx := context.Background()
	hub := newTestHub(t)
	n := newTestNode(t, hub, "b")
	hub.join("c")
	r0 := n.importDisk(t, "vm", 2, "old!")
	n.Reconcile(ctx)
	waitPushEnded(t, n, r0)
	n.Reconcile(ctx)

	n.pusher.err = errors.New("placement set unreachable")
	r1 := commitOver(t, n, "new!")
	if roots := n.CatalogRoots(); !slices.Contains(roots, r0) || !slices.Contains(roots, r1) {
		t.Fatalf("catalog roots %v, want the newest %s and the held %s", roots, r1, r0)
	}
	healed := map[cid.Cid]int{}
	for _, r := range n.HealRoots() {
		healed[r.Root] = r.Replicas
	}
	if healed[r0] != 2 || healed[r1] != 2 {
		t.Fatalf("heal roots %v, want %s and %s at 2 copies", healed, r0, r1)
	}
	gc(t, n)
	if ok, _ := n.store.Has(ctx, r0); !ok {
		t.Fatalf("the held root %s was collected", r0)
	}

	n.pusher.err = nil
	r2 := commitOver(t, n, "end!")
	if e, _ := n.cat.Get(catalog.DiskKey("vm")); e.Held != r2 {
		t.Fatalf("held root %s after a confirmed push, want %s", e.Held, r2)
	}
	if roots := n.CatalogRoots(); len(roots) != 1 || roots[0] != r2 {
		t.Errorf("catalog roots %v, want only %s", roots, r2)
	}
	gc(t, n)
	for _, root := range []cid.Cid{r0, r1} {
		if ok, _ := n.store.Has(ctx, root); ok {
			t.Errorf("root %s survived the gc once %s was confirmed", root, r2)
		}
	}
}
