package cluster

import (
	"context"
	"testing"

	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

// wantOrigin checks the origin and creator a node's head of disk has.
func wantOrigin(t *testing.T, n *testNode, disk, origin, creator string) {
	t.Helper()
	info, err := n.vols.DiskInfo(context.Background(), disk)
	if err != nil || info.Origin != origin || info.Creator != creator {
		t.Errorf("%s: disk info origin %q, creator %q (%v); want %q, %q", n.selfStr, info.Origin, info.Creator, err, origin, creator)
	}
}

// A move hands over the head's origin and creator, even when the record
// it replaces does not carry them (a node of an older version wrote it).
func TestDecideMoveCarriesOrigin(t *testing.T) {
	owned := entry("disk/vm", self, self, 3, root(t, 1))
	head := volume.DiskInfo{Root: root(t, 2), Origin: "golden", Creator: "csi"}
	got, err := DecideMove("vm", owned, true, selfID, otherID, true, head)
	if err != nil || got.Origin != "golden" || got.Creator != "csi" {
		t.Fatalf("DecideMove = %+v, %v; want the head's origin and creator", got, err)
	}
}

// A head's origin and creator missing from its record (written by a node
// of an older version) are published.
func TestDecidePublishesOrigin(t *testing.T) {
	r := root(t, 1)
	l := head("vm", r)
	e := withHeld(published(l, self, 1), r)
	l.Origin, l.Creator = "golden", "csi"
	v := view([]catalog.Entry{e}, []Local{l}, map[string]Pushes{"vm": {Pushed: r}})
	got := actionsFor(Decide(v), l.Key)
	if len(got) != 1 || got[0].Op != OpPublish || got[0].Entry.Origin != "golden" || got[0].Entry.Creator != "csi" {
		t.Fatalf("decided %v, want one publish carrying the origin and creator", got)
	}
}

// A take starts from the catalog's record: the origin and creator it
// carries are the taken record's.
func TestDecideTakeKeepsOrigin(t *testing.T) {
	e := catalog.Entry{Key: catalog.DiskKey("vm"), Owner: "other", Epoch: 1, Origin: "golden", Creator: "csi"}
	got, err := DecideTake("vm", e, true, selfID, false, false)
	if err != nil || got.Origin != "golden" || got.Creator != "csi" {
		t.Fatalf("DecideTake = %+v, %v; want the origin and creator kept", got, err)
	}
}
