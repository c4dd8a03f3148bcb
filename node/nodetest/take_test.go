package nodetest_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/node/nodetest"
	"github.com/weft-mesh/weft/volume"
)

// TestOwnerKilledDiskTaken mirrors TestMeshSyncDisk and the take path: the
// owner of a sync disk with R=3 dies right after a flush, with one more
// write it never flushed; another node takes the disk without force and
// reads back every flushed byte, and nothing of the unflushed write.
func TestOwnerKilledDiskTaken(t *testing.T) {
	ctx, rng, nodes := fiveSites(t)
	a, b := nodes[0], nodes[1]
	flushed := syncDisk(t, ctx, rng, a, "db")
	for range 2 {
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
		awaitOwner(t, n, "db", b, e.Epoch+1)
	}
}

// TestKilledOwnerRestarts goes on where TestOwnerKilledDiskTaken ends: the
// killed owner comes back on its home, learns that the disk was taken,
// gives its head up and does not bring its epoch back; the new owner's
// disk is untouched.
func TestKilledOwnerRestarts(t *testing.T) {
	ctx, rng, nodes := fiveSites(t)
	a, b := nodes[0], nodes[1]
	image := syncDisk(t, ctx, rng, a, "db")
	e, _ := a.Entry(catalog.DiskKey("db"))
	a.Kill()
	awaitAlive(t, b, len(nodes)-1)
	if _, err := b.Take(ctx, "db", false); err != nil {
		t.Fatal(err)
	}
	write(t, ctx, rng, b, "db", image)
	if err := b.Flush(ctx, "db"); err != nil {
		t.Fatal(err)
	}

	a.Restart()
	awaitAlive(t, a, len(nodes))
	nodetest.Await(t, within, a.Name+" gives db up", func() string {
		if _, err := a.Core.Vols.Head("db"); !errors.Is(err, volume.ErrNotFound) {
			return fmt.Sprintf("head of db: %v", err)
		}
		return ""
	})
	for _, n := range nodes {
		awaitOwner(t, n, "db", b, e.Epoch+1)
	}
	wantContent(t, ctx, b, "db", image)
}

// awaitOwner waits until n's catalog names owner the owner of disk at
// epoch.
func awaitOwner(t *testing.T, n *nodetest.Node, disk string, owner *nodetest.Node, epoch uint64) {
	t.Helper()
	nodetest.Await(t, within, n.Name+" names "+owner.Name+" the owner of "+disk, func() string {
		got, ok := n.Entry(catalog.DiskKey(disk))
		if !ok || got.Owner != owner.ID.String() || got.Epoch != epoch {
			return fmt.Sprintf("owner %s epoch %d, want %s epoch %d", got.Owner, got.Epoch, owner.ID, epoch)
		}
		return ""
	})
}
