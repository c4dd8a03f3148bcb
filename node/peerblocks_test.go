package node_test

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/cluster"
	"github.com/weft-mesh/weft/internal/clock"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/exchange"
	"github.com/weft-mesh/weft/mesh/memnet"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/node"
	"github.com/weft-mesh/weft/volume"
)

// TestGCKeepsPushedBlocksForTheGrace: a member pushes a root's blocks
// before the catalog entry naming the root (a sync flush, a replication, a
// heal push). weft gc on the receiver in between finds no root for them;
// it must keep them for the grace period, or the pusher counts a copy the
// receiver deleted. Once the grace has passed with no root naming them,
// they are garbage and gc sweeps them.
func TestGCKeepsPushedBlocksForTheGrace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	net := memnet.New()
	defer net.Close()
	log := slog.New(slog.DiscardHandler)

	fake := clock.NewFake(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	store := blockstore.NewMemory()
	cat := catalog.New(meshnet.TestID("receiver").String())
	core, err := node.NewCore(ctx, node.CoreConfig{
		Home: t.TempDir(), Site: "s", Store: store, Logger: log, Clock: fake,
		Catalog: cat, Net: net.Join(meshnet.TestID("receiver"), "s", cluster.GossipState(cat, log)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer core.Close()
	pusher := net.Join(meshnet.TestID("pusher"), "s", cluster.GossipState(catalog.New(meshnet.TestID("pusher").String()), log))
	client := &exchange.Client{Dialer: meshnet.Dialer{Net: pusher, Proto: exchange.Protocol}}
	defer client.Close()

	blocks := make([]blockstore.Block, 8)
	rng := rand.NewChaCha8([32]byte{7})
	for i := range blocks {
		data := make([]byte, 4096)
		rng.Read(data)
		blocks[i] = blockstore.NewBlock(blockstore.CodecRaw, data)
	}
	if err := client.Put(ctx, string(meshnet.TestID("receiver")), blocks); err != nil {
		t.Fatalf("push: %v", err)
	}
	held := func() int {
		n := 0
		for _, b := range blocks {
			if ok, err := store.Has(ctx, b.CID); err != nil {
				t.Fatal(err)
			} else if ok {
				n++
			}
		}
		return n
	}

	// Twice: the cron may run gc more than once before the entry arrives.
	for range 2 {
		fake.Advance(volume.DefaultPeerBlockGrace / 3)
		st, err := core.Vols.GC(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n := held(); n != len(blocks) {
			t.Fatalf("gc within the grace (%+v) left %d of the %d pushed blocks, want all", st, n, len(blocks))
		}
	}
	fake.Advance(volume.DefaultPeerBlockGrace / 3)
	st, err := core.Vols.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := held(); n != 0 {
		t.Fatalf("gc after the grace (%+v) left %d of the %d pushed blocks no root names, want none", st, n, len(blocks))
	}
}
