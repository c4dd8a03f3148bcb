package nodetest_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/node/nodetest"
	"github.com/weft-mesh/weft/placement"
)

// within bounds every wait of a scenario: generous, since the race
// detector and a busy machine slow everything, while a healthy run takes
// a fraction of it.
const within = 30 * time.Second

// diskSize is the size of the scenarios' disks: 64 blocks of the default
// 64 KiB.
const diskSize = 4 << 20

// fiveSites starts five nodes, at sites a to e, on one network, and
// returns them with the scenario's deadline and its seeded random source.
func fiveSites(t *testing.T) (context.Context, *rand.Rand, []*nodetest.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*within)
	t.Cleanup(cancel)
	rng := nodetest.Rand(t)
	net := nodetest.NewNetwork(t)
	var nodes []*nodetest.Node
	for _, site := range []string{"a", "b", "c", "d", "e"} {
		nodes = append(nodes, nodetest.NewNode(t, net, "node-"+site, site))
	}
	for _, n := range nodes {
		awaitAlive(t, n, len(nodes))
	}
	return ctx, rng, nodes
}

// awaitAlive waits until n sees want live members, itself included.
func awaitAlive(t *testing.T, n *nodetest.Node, want int) {
	t.Helper()
	nodetest.Await(t, within, n.Name+" sees "+fmt.Sprint(want)+" live members", func() string {
		if got := len(n.Core.Cluster().Live()); got != want {
			return fmt.Sprintf("got %d live, want %d", got, want)
		}
		return ""
	})
}

// write writes random data over a few ranges of disk and returns what the
// disk holds after it.
func write(t *testing.T, ctx context.Context, rng *rand.Rand, n *nodetest.Node, disk string, image []byte) {
	t.Helper()
	for range 8 {
		size := 1 + rng.IntN(200<<10)
		off := rng.IntN(len(image) - size)
		p := make([]byte, size)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		if err := n.Write(ctx, disk, p, int64(off)); err != nil {
			t.Fatal(err)
		}
		copy(image[off:], p)
	}
}

// syncDisk creates a sync disk with R=3 on n, writes to it and flushes,
// and returns what it holds.
func syncDisk(t *testing.T, ctx context.Context, rng *rand.Rand, n *nodetest.Node, disk string) []byte {
	t.Helper()
	if _, err := n.CreateDisk(ctx, disk, diskSize, 3, true); err != nil {
		t.Fatal(err)
	}
	image := make([]byte, diskSize)
	write(t, ctx, rng, n, disk, image)
	if err := n.Flush(ctx, disk); err != nil {
		t.Fatal(err)
	}
	return image
}

// wantContent fails the test unless n's head of disk reads image.
func wantContent(t *testing.T, ctx context.Context, n *nodetest.Node, disk string, image []byte) {
	t.Helper()
	got, err := n.Read(ctx, disk, 0, len(image))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, image) {
		i := 0
		for i < len(got) && got[i] == image[i] {
			i++
		}
		t.Fatalf("%s: %s differs from what was written at byte %d", n.Name, disk, i)
	}
}

// awaitPlaced waits until no live node counts the disk of info
// under-replicated and its blocks lie exactly on their placement sets of r
// (placementHolds).
func awaitPlaced(t *testing.T, ctx context.Context, info api.DiskInfo, r int, owner *nodetest.Node, live []*nodetest.Node) {
	t.Helper()
	nodetest.Await(t, within, fmt.Sprintf("%s replicated to R=%d on %d nodes", info.Name, r, len(live)), func() string {
		d, err := owner.DiskInfo(ctx, info.Name)
		switch {
		case err != nil:
			return err.Error()
		case d.UnderReplicated != 0:
			return fmt.Sprintf("%d blocks under-replicated", d.UnderReplicated)
		}
		return placementHolds(ctx, info, r, owner, live)
	})
}

// placementHolds says why the disk at info's root is not held by exactly
// the placement sets of r live members: every data block on each of its r
// placement members, and on no other member but keep (the writer, which
// caches what it wrote). "" means it is.
func placementHolds(ctx context.Context, info api.DiskInfo, r int, keep *nodetest.Node, live []*nodetest.Node) string {
	var members []placement.Member
	byID := map[string]*nodetest.Node{}
	for _, n := range live {
		members = append(members, placement.Member{ID: string(n.ID), Site: n.Site})
		byID[string(n.ID)] = n
	}
	blocks, err := keep.DataBlocks(ctx, info)
	if err != nil {
		return err.Error()
	}
	for _, c := range blocks {
		set := map[string]bool{}
		for _, m := range placement.Place(c.Hash(), members, r) {
			set[m.ID] = true
			if !byID[m.ID].Has(ctx, c) {
				return fmt.Sprintf("block %s not on %s, one of its %d placement members", c, byID[m.ID].Name, r)
			}
		}
		for _, n := range live {
			if !set[string(n.ID)] && n != keep && n.Has(ctx, c) {
				return fmt.Sprintf("block %s also on %s, outside its placement set", c, n.Name)
			}
		}
	}
	return ""
}

// catalogRoot is the root n's catalog names for disk, and its owner.
func catalogRoot(n *nodetest.Node, disk string) (cid.Cid, string) {
	e, ok := n.Entry(catalog.DiskKey(disk))
	if !ok {
		return cid.Undef, ""
	}
	return e.Root, e.Owner
}

// parseRoot parses a disk info's root.
func parseRoot(t *testing.T, info api.DiskInfo) cid.Cid {
	t.Helper()
	c, err := cid.Parse(info.Root)
	if err != nil {
		t.Fatalf("%s: root %q: %v", info.Name, info.Root, err)
	}
	return c
}
