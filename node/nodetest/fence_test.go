package nodetest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/node/nodetest"
	"github.com/weft-mesh/weft/volume"
)

// TestCutOffOwnerFenced mirrors TestSplitBrainFencesOldOwner: the owner of
// a disk is cut off from every other node; the other side takes the disk
// (a higher epoch) and writes to it while the old owner, unaware, commits
// writes of its own. When the partition heals, every catalog names the
// new owner at epoch+1, the old owner has no head of the disk, and its
// writes survive in its fenced-e<epoch+1>-… replica, readable anywhere.
// The new owner lists that replica, reads it and restores it like its own
// (it used to list only the replicas it had when it took the disk); once
// it removes it, it stays removed everywhere.
func TestCutOffOwnerFenced(t *testing.T) {
	ctx, rng, nodes := fiveSites(t)
	a, b, others := nodes[0], nodes[1], nodes[1:]
	if _, err := a.CreateDisk(ctx, "db", diskSize, 3, false); err != nil {
		t.Fatal(err)
	}
	base := make([]byte, diskSize)
	write(t, ctx, rng, a, "db", base)
	info, err := a.Commit(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range others {
		nodetest.Await(t, within, n.Name+" sees db published", func() string {
			d, err := a.DiskInfo(ctx, "db")
			switch root, _ := catalogRoot(n, "db"); {
			case err != nil:
				return err.Error()
			case root.String() != info.Root || d.UnderReplicated != 0:
				return fmt.Sprintf("root %s, want %s; %d blocks under-replicated", root, info.Root, d.UnderReplicated)
			}
			return ""
		})
	}
	e, ok := a.Entry(catalog.DiskKey("db"))
	if !ok {
		t.Fatal("db not in its owner's catalog")
	}
	epoch := e.Epoch

	a.CutFrom(others...)
	awaitAlive(t, b, len(others))
	awaitAlive(t, a, 1)
	taken, err := b.Take(ctx, "db", false)
	if err != nil {
		t.Fatal(err)
	}
	if taken.Epoch != epoch+1 {
		t.Fatalf("take: epoch %d, want %d", taken.Epoch, epoch+1)
	}
	newer := append([]byte(nil), base...)
	write(t, ctx, rng, b, "db", newer)
	if _, err := b.Commit(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	old := append([]byte(nil), base...)
	write(t, ctx, rng, a, "db", old) // acknowledged on the wrong side
	if err := a.Flush(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Commit(ctx, "db"); err != nil {
		t.Fatal(err)
	}

	a.HealWith(others...)
	for _, n := range nodes {
		nodetest.Await(t, within, n.Name+" names "+b.Name+" the owner of db", func() string {
			e, ok := n.Entry(catalog.DiskKey("db"))
			if !ok || e.Owner != b.ID.String() || e.Epoch != epoch+1 {
				return fmt.Sprintf("owner %s epoch %d, want %s epoch %d", e.Owner, e.Epoch, b.ID, epoch+1)
			}
			return ""
		})
	}
	nodetest.Await(t, within, a.Name+" gives db up", func() string {
		if _, err := a.Core.Vols.Head("db"); !errors.Is(err, volume.ErrNotFound) {
			return fmt.Sprintf("head of db: %v", err)
		}
		return ""
	})
	reps, err := a.Replicas(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	var fenced []string
	for _, r := range reps {
		if strings.HasPrefix(r.Name, fmt.Sprintf("fenced-e%d-", epoch+1)) {
			fenced = append(fenced, r.Name)
		}
	}
	if len(fenced) != 1 {
		t.Fatalf("%s keeps %d fenced replicas of its writes, want 1: %+v", a.Name, len(fenced), reps)
	}
	wantContent(t, ctx, b, "db", newer)
	c := nodes[2]
	nodetest.Await(t, within, c.Name+" reads the fenced replica", func() string {
		got, err := c.Export(ctx, "db@"+fenced[0])
		switch {
		case err != nil:
			return err.Error()
		case !bytes.Equal(got, old):
			return "its content differs from the old owner's writes"
		}
		return ""
	})

	nodetest.Await(t, within, b.Name+", the new owner, lists the fenced replica", func() string {
		if names := replicaNames(ctx, b, "db"); !slices.Contains(names, fenced[0]) {
			return fmt.Sprintf("lists %q", names)
		}
		d, err := b.DiskInfo(ctx, "db")
		if err != nil {
			return err.Error()
		}
		if d.ReplicaCount != len(replicaNames(ctx, b, "db")) {
			return fmt.Sprintf("disk info counts %d replicas, replica ls %d", d.ReplicaCount, len(replicaNames(ctx, b, "db")))
		}
		return ""
	})
	got, err := b.Export(ctx, "db@"+fenced[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, old) {
		t.Fatalf("%s reads the fenced replica differently from the old owner's writes", b.Name)
	}
	if _, err := b.Restore(ctx, "db", fenced[0]); err != nil {
		t.Fatal(err)
	}
	wantContent(t, ctx, b, "db", old)

	if err := b.RemoveReplica(ctx, "db", fenced[0]); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		nodetest.Await(t, within, n.Name+" forgets the removed fenced replica", func() string {
			n.Core.Cluster().Reconcile(ctx)
			_, live := n.Entry(catalog.ReplicaKey("db", fenced[0]))
			switch names := replicaNames(ctx, n, "db"); {
			case live:
				return "its catalog names it"
			case slices.Contains(names, fenced[0]):
				return fmt.Sprintf("lists %q", names)
			}
			return ""
		})
	}
}

// replicaNames lists the names of disk's replicas n lists; none on error.
func replicaNames(ctx context.Context, n *nodetest.Node, disk string) []string {
	reps, err := n.Replicas(ctx, disk)
	if err != nil {
		return nil
	}
	names := make([]string, len(reps))
	for i, r := range reps {
		names[i] = r.Name
	}
	return names
}
