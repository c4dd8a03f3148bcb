package node

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockmap"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/heal"
	"github.com/weft-mesh/weft/placement"
	"github.com/weft-mesh/weft/volume"
)

// A failed async push is left to heal, but never becomes the base of the
// next push: a sync flush pushes only the blocks new since its base, so a
// base nobody confirmed would let a FLUSH return while the blocks of the
// failed push sit on one node.
func TestFailedAsyncPushIsNoBase(t *testing.T) {
	ctx := context.Background()
	store := blockstore.NewMemory()
	cfg := volume.DefaultConfig()
	cfg.Dir, cfg.Store = t.TempDir(), store
	vols, err := volume.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vols.Close() })
	n := &meshNode{
		selfStr: testSelf, vols: vols, log: slog.New(slog.DiscardHandler), life: ctx,
		pushed: map[string]cid.Cid{}, tried: map[string]cid.Cid{}, pushing: map[string]bool{},
		wake: make(chan struct{}, 1),
	}
	maps := blockmap.New(store, 64)
	n.pusher = &heal.Pusher{
		Self: testSelf, Store: store, Maps: maps,
		// This node alone is alive: a push for two copies fails at once.
		Members:    func() []placement.Member { return []placement.Member{{ID: testSelf, Site: "a"}} },
		Redundancy: heal.NewRedundancy(maps, []string{testSelf}),
	}
	if _, err := n.vols.Import(ctx, volume.DiskSpec{Name: "vm", Replicas: 2}, bytes.NewReader(bytes.Repeat([]byte("weft"), 1<<16))); err != nil {
		t.Fatal(err)
	}
	var rec volume.Record
	for _, r := range n.vols.Records() {
		if r.Disk == "vm" && r.Replica == "" {
			rec = r
		}
	}
	if !rec.Root.Defined() {
		t.Fatal("the imported disk has no root")
	}

	n.replicateAsync(ctx, rec)
	deadline := time.Now().Add(10 * time.Second)
	for {
		n.mu.Lock()
		done := !n.pushing["vm"]
		n.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the async push did not end")
		}
		time.Sleep(5 * time.Millisecond)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pushed["vm"].Defined() {
		t.Errorf("a failed push made %s the confirmed base of the next push", n.pushed["vm"])
	}
	if n.tried["vm"] != rec.Root {
		t.Errorf("tried = %s, want the failed root %s (so reconcile does not push it again)", n.tried["vm"], rec.Root)
	}
}
