package nodetest_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/weft-mesh/weft/node/nodetest"
)

// TestSpacesuitPushedToEverySite mirrors TestPushSpacesuitToSites with four
// sites: a spacesuit published at site a is pushed to b, c, d and e at
// once; a dies, and every site clones the spacesuit and reads it back
// byte for byte.
func TestSpacesuitPushedToEverySite(t *testing.T) {
	ctx, rng, nodes := fiveSites(t)
	a, sites := nodes[0], nodes[1:]
	if _, err := a.CreateDisk(ctx, "gold", diskSize, 1, false); err != nil {
		t.Fatal(err)
	}
	image := make([]byte, diskSize)
	write(t, ctx, rng, a, "gold", image)
	if _, err := a.Commit(ctx, "gold"); err != nil {
		t.Fatal(err)
	}
	sp, err := a.Publish(ctx, "ubuntu", "gold")
	if err != nil {
		t.Fatal(err)
	}
	if sp.Ref != "ubuntu@1" {
		t.Fatalf("publish: %s, want ubuntu@1", sp.Ref)
	}
	var targets []string
	for _, n := range sites {
		targets = append(targets, n.Site)
	}
	tr, err := a.Push(ctx, "ubuntu@1", targets...)
	if err != nil {
		t.Fatal(err)
	}
	nodetest.Await(t, within, "push of ubuntu@1 to every site", func() string {
		if tr, err = a.Transfer(ctx, tr.ID); err != nil {
			return err.Error()
		}
		if tr.State != "done" {
			return fmt.Sprintf("state %s: %s", tr.State, tr.Error)
		}
		return ""
	})
	if len(tr.Targets) != len(sites) {
		t.Fatalf("push reached %d targets, want %d: %+v", len(tr.Targets), len(sites), tr.Targets)
	}
	for _, tp := range tr.Targets {
		if tp.State != "done" {
			t.Fatalf("target %s: %+v", tp.Target, tp)
		}
	}

	a.Kill()
	for _, n := range sites {
		info, err := n.Clone(ctx, "ubuntu@1", "vm-"+n.Site)
		if err != nil {
			t.Fatal(err)
		}
		if info.Root != sp.Root {
			t.Fatalf("%s: clone of ubuntu@1 at root %s, want %s", n.Name, info.Root, sp.Root)
		}
		wantContent(t, ctx, n, "vm-"+n.Site, image)
		got, err := n.Export(ctx, "ubuntu@1")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, image) {
			t.Fatalf("%s: ubuntu@1 differs from what was published", n.Name)
		}
	}
}
