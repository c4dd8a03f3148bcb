package nodetest_test

import (
	"fmt"
	"testing"

	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/node/nodetest"
)

// TestOwnerKilledDiskTaken mirrors TestMeshSyncDisk and the take path: the
// owner of a sync disk with R=3 dies right after a flush, with one more
// write it never flushed; another node takes the disk without force and
// reads back every flushed byte, and nothing of the unflushed write.
func TestOwnerKilledDiskTaken(t *testing.T) {
	ctx, rng, nodes := fiveSites(t)
	a, b := nodes[0], nodes[1]
	if _, err := a.CreateDisk(ctx, "db", diskSize, 3, true); err != nil {
		t.Fatal(err)
	}
	flushed := make([]byte, diskSize)
	for range 3 {
		write(t, ctx, rng, a, "db", flushed)
		if err := a.Flush(ctx, "db"); err != nil {
			t.Fatal(err)
		}
	}
	e, ok := a.Entry(catalog.DiskKey("db"))
	if !ok {
		t.Fatal("db not in the owner's catalog after a sync flush")
	}
	lost := append([]byte(nil), flushed...)
	write(t, ctx, rng, a, "db", lost) // acknowledged by nobody: it must not count

	a.Kill()
	awaitAlive(t, b, len(nodes)-1)
	info, err := b.Take(ctx, "db", false)
	if err != nil {
		t.Fatal(err)
	}
	if info.Owner != b.ID.String() || info.Epoch != e.Epoch+1 {
		t.Fatalf("take: owner %s epoch %d, want %s epoch %d", info.Owner, info.Epoch, b.ID, e.Epoch+1)
	}
	if info.Root != e.Root.String() {
		t.Fatalf("take: root %s, want the last flushed root %s", info.Root, e.Root)
	}
	wantContent(t, ctx, b, "db", flushed)
	for _, n := range nodes[2:] {
		nodetest.Await(t, within, n.Name+" sees db taken by "+b.Name, func() string {
			got, ok := n.Entry(catalog.DiskKey("db"))
			if !ok || got.Owner != b.ID.String() || got.Epoch != e.Epoch+1 {
				return fmt.Sprintf("owner %s epoch %d", got.Owner, got.Epoch)
			}
			return ""
		})
	}
}
