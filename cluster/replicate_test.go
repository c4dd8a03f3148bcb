package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/weft-mesh/weft/heal"
)

// A failed async push is left to heal, but never becomes the base of the
// next push: a sync flush pushes only the blocks new since its base, so a
// base nobody confirmed would let a FLUSH return while the blocks of the
// failed push sit on one node.
func TestFailedAsyncPushIsNoBase(t *testing.T) {
	n := newTestNode(t, newTestHub(t), "b")
	n.pusher.err = heal.ErrTooFewNodes
	root := n.importDisk(t, "vm", 2, "weft")
	n.Reconcile(context.Background()) // publishes vm and starts its push
	deadline := time.Now().Add(10 * time.Second)
	for {
		n.mu.Lock()
		done := !n.pushing["vm"] && n.tried["vm"].Defined()
		n.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the async push did not end")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if p := n.Pushed("vm"); p.Defined() {
		t.Errorf("a failed push made %s the confirmed base of the next push", p)
	}
	n.mu.Lock()
	tried := n.tried["vm"]
	n.mu.Unlock()
	if tried != root {
		t.Errorf("tried = %s, want the failed root %s (so reconcile does not push it again)", tried, root)
	}
	if acts := DecideKeys(n.view(), "disk/vm"); len(acts) != 0 {
		t.Errorf("the next pass decides %v, want nothing (the tried root is not pushed again)", acts)
	}
}
