package nodetest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/node/nodetest"
)

// TestRecoverAnnounces: once a recover returns, another node sees the
// recovered root and the backup of the head it replaced, as after a
// restore: a command run there right after sees the change.
func TestRecoverAnnounces(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*within)
	defer cancel()
	rng := nodetest.Rand(t)
	net := nodetest.NewNetwork(t)
	a, b := nodetest.NewNode(t, net, "node-a", "a"), nodetest.NewNode(t, net, "node-b", "b")
	awaitAlive(t, a, 2)
	awaitAlive(t, b, 2)
	if _, err := a.CreateDisk(ctx, "vm", diskSize, 1, false); err != nil {
		t.Fatal(err)
	}
	image := make([]byte, diskSize)
	write(t, ctx, rng, a, "vm", image)
	if _, err := a.Commit(ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Replicate(ctx, api.ReplicateRequest{Disk: "vm", Site: "b", Every: time.Hour}); err != nil {
		t.Fatal(err)
	}
	nodetest.Await(t, within, "vm replicated to b", func() string {
		ps, err := a.Policies(ctx)
		if err != nil {
			return err.Error()
		}
		if len(ps) != 1 || ps[0].LastReplica == "" {
			return fmt.Sprintf("policies %+v", ps)
		}
		return ""
	})
	write(t, ctx, rng, a, "vm", image) // a later state: recover replaces it, keeping it as a backup
	if _, err := a.Commit(ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	before, err := a.Replicas(ctx, "vm")
	if err != nil {
		t.Fatal(err)
	}
	info, err := a.Recover(ctx, "vm", "b")
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := b.Entry(catalog.DiskKey("vm")); !ok || e.Root.String() != info.Root {
		t.Fatalf("right after the recover, b sees vm at %v (%v), want %s", e.Root, ok, info.Root)
	}
	after, err := a.Replicas(ctx, "vm")
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before)+1 {
		t.Fatalf("replicas %+v after the recover, %+v before: want one backup more", after, before)
	}
	for _, r := range after {
		if _, ok := b.Entry(catalog.ReplicaKey("vm", r.Name)); !ok {
			t.Fatalf("right after the recover, b does not see replica %s", r.Name)
		}
	}
}
