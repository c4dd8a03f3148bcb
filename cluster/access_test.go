package cluster

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

// wantRules checks the rules a node applies to its head of disk: addr
// refused, allowed allowed, initiator the one allowed, and whether iSCSI
// logins fail closed for want of a CHAP secret here.
func wantRules(t *testing.T, n *testNode, disk string, chapMissing bool) {
	t.Helper()
	for addr, want := range map[string]bool{"10.1.2.3": true, "127.0.0.1": false} {
		if ok, err := n.vols.Allowed(disk, netip.MustParseAddr(addr)); err != nil || ok != want {
			t.Errorf("%s: Allowed(%s) = %v, %v; want %v", n.selfStr, addr, ok, err, want)
		}
	}
	for name, want := range map[string]bool{"iqn.2026-01.test:host1": true, "iqn.2026-01.test:other": false} {
		if ok, err := n.vols.InitiatorAllowed(disk, name); err != nil || ok != want {
			t.Errorf("%s: InitiatorAllowed(%s) = %v, %v; want %v", n.selfStr, name, ok, err, want)
		}
	}
	_, err := n.vols.DiskCHAP(disk)
	info, ierr := n.vols.DiskInfo(context.Background(), disk)
	if errors.Is(err, volume.ErrNoCHAPSecret) != chapMissing || ierr != nil || info.CHAPMissing != chapMissing {
		t.Errorf("%s: DiskCHAP: %v, disk info CHAPMissing %v (%v); want a missing secret: %v", n.selfStr, err, info.CHAPMissing, ierr, chapMissing)
	}
}

// A disk's rules travel with it: its record carries the lists and that
// CHAP is on (never the secrets), a move and a take apply them on the new
// owner before its head serves anyone, and the new owner refuses iSCSI
// logins until an operator sets CHAP secrets there. Its origin and creator
// travel the same way, so that disk info on the new owner still says what
// it was cloned from and the CSI driver still knows the disk for its own.
func TestAccessTravelsWithTheDisk(t *testing.T) {
	hub := newTestHub(t)
	b := newTestNode(t, hub, "b")
	c := newTestNode(t, hub, "c")
	ctx := context.Background()
	// An empty disk: this test's nodes fetch no blocks from each other,
	// and a disk's info counts its root's.
	const origin, creator = "golden@nightly.1", "csi"
	if _, err := b.vols.CreateDisk(ctx, volume.DiskSpec{Name: "vm", Size: 1 << 20, Replicas: 1, Origin: origin, Creator: creator}); err != nil {
		t.Fatal(err)
	}
	allow, initiators := []string{"10.0.0.0/8"}, []string{"iqn.2026-01.test:host1"}
	if _, err := b.vols.SetACL(ctx, "vm", volume.ACL{Allow: &allow, Initiators: &initiators}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.vols.SetCHAP(ctx, "vm", &volume.CHAP{User: "host1", Secret: "twelve-bytes-or-more"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, catalog.DiskKey("vm")); err != nil {
		t.Fatal(err)
	}
	e, _ := b.cat.Get(catalog.DiskKey("vm"))
	if !slices.Equal(e.Allow, allow) || !slices.Equal(e.Initiators, initiators) || !e.CHAP || e.Origin != origin || e.Creator != creator {
		t.Fatalf("published record carries allow %v, initiators %v, chap %v, origin %q, creator %q; want %v, %v, true, %q, %q",
			e.Allow, e.Initiators, e.CHAP, e.Origin, e.Creator, allow, initiators, origin, creator)
	}

	moved, _, err := b.Move(ctx, "vm", c.Self())
	if err != nil {
		t.Fatal(err)
	}
	if !moved.CHAP || !slices.Equal(moved.Allow, allow) || moved.Origin != origin || moved.Creator != creator {
		t.Fatalf("moved record %+v does not carry the rules, origin and creator", moved)
	}
	c.Reconcile(ctx)
	wantRules(t, c, "vm", true)
	wantOrigin(t, c, "vm", origin, creator)
	if _, err := c.vols.SetCHAP(ctx, "vm", &volume.CHAP{User: "host1", Secret: "another-long-secret"}); err != nil {
		t.Fatal(err)
	}
	wantRules(t, c, "vm", false)
	b.Reconcile(ctx) // gives its head up

	// c dies; b takes the disk back at the record c published.
	if err := c.Publish(ctx, catalog.DiskKey("vm")); err != nil {
		t.Fatal(err)
	}
	hub.setDown(c.Self(), true)
	if _, err := b.Take(ctx, "vm", false); err != nil {
		t.Fatalf("take: %v", err)
	}
	wantRules(t, b, "vm", true) // b's own secrets went with its head
	wantOrigin(t, b, "vm", origin, creator)
}

// A change of a head's rules is published: the record the next owner
// starts from has the lists the owner last set.
func TestDecidePublishesAccessChange(t *testing.T) {
	r := root(t, 1)
	l := head("vm", r)
	e := withHeld(published(l, self, 1), r)
	l.Access = volume.Access{Allow: []string{"10.0.0.0/8"}, CHAP: true}
	v := view([]catalog.Entry{e}, []Local{l}, map[string]Pushes{"vm": {Pushed: r}})
	got := actionsFor(Decide(v), l.Key)
	if len(got) != 1 || got[0].Op != OpPublish || !slices.Equal(got[0].Entry.Allow, l.Access.Allow) || !got[0].Entry.CHAP {
		t.Fatalf("decided %v, want one publish carrying the new rules", got)
	}
}
