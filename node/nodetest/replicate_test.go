package nodetest_test

import (
	"fmt"
	"testing"

	"github.com/weft-mesh/weft/node/nodetest"
)

// TestReplicationToR mirrors TestMeshReplicatesAndHeals with five nodes: an
// async disk with R=3 committed on one node ends with every block on
// exactly its three placement members, and nobody counts it
// under-replicated; after one of them dies, heal restores R on the four
// left.
func TestReplicationToR(t *testing.T) {
	ctx, rng, nodes := fiveSites(t)
	a := nodes[0]
	if _, err := a.CreateDisk(ctx, "vm", diskSize, 3, false); err != nil {
		t.Fatal(err)
	}
	image := make([]byte, diskSize)
	write(t, ctx, rng, a, "vm", image)
	info, err := a.Commit(ctx, "vm")
	if err != nil {
		t.Fatal(err)
	}
	root := parseRoot(t, info)
	awaitPlaced(t, ctx, info, 3, a, nodes)
	for _, n := range nodes[1:] {
		nodetest.Await(t, within, n.Name+" sees vm at its root", func() string {
			if got, owner := catalogRoot(n, "vm"); got != root || owner != a.ID.String() {
				return fmt.Sprintf("root %s owner %s, want %s owned by %s", got, owner, root, a.ID)
			}
			return ""
		})
	}

	// The node that holds the most of vm dies; the others heal back to R.
	victim := nodes[1]
	victim.Kill()
	live := append([]*nodetest.Node{a}, nodes[2:]...)
	for _, n := range live {
		awaitAlive(t, n, len(live))
	}
	awaitPlaced(t, ctx, info, 3, a, live)
	wantContent(t, ctx, a, "vm", image)
}
