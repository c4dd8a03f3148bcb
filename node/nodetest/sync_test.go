package nodetest_test

import (
	"bytes"
	"testing"

	"github.com/weft-mesh/weft/mesh/catalog"
)

// TestSyncFlushNeedsRLiveNodes mirrors TestMeshSyncDisk's second half: with
// three of five nodes off the network, a sync disk with R=3 has two live
// members and its flush fails; once they are back it succeeds, and it
// returns only after R-1 other nodes' catalogs name the flushed root.
func TestSyncFlushNeedsRLiveNodes(t *testing.T) {
	ctx, rng, nodes := fiveSites(t)
	a := nodes[0]
	image := syncDisk(t, ctx, rng, a, "db")

	for _, n := range nodes[2:] {
		n.Down()
	}
	awaitAlive(t, a, 2)
	write(t, ctx, rng, a, "db", image)
	if err := a.Flush(ctx, "db"); err == nil {
		t.Fatal("a sync flush with R=3 and 2 live nodes succeeded, want an error")
	} else {
		t.Logf("flush with 2 live nodes: %v", err)
	}

	for _, n := range nodes[2:] {
		n.Up()
	}
	awaitAlive(t, a, len(nodes))
	if err := a.Flush(ctx, "db"); err != nil {
		t.Fatalf("flush with every node back: %v", err)
	}
	e, ok := a.Entry(catalog.DiskKey("db"))
	if !ok {
		t.Fatal("db not in the owner's catalog")
	}
	confirmed := 0
	for _, n := range nodes[1:] {
		if got, _ := n.Entry(catalog.DiskKey("db")); got.Root == e.Root {
			confirmed++
		}
	}
	if confirmed < 2 {
		t.Fatalf("%d other nodes name the flushed root %s when the flush returned, want at least R-1 = 2", confirmed, e.Root)
	}
	got, err := nodes[1].Export(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, image) {
		t.Fatalf("%s reads db, owned by %s, unlike what was flushed", nodes[1].Name, a.Name)
	}
}
