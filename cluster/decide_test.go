package cluster

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/volume"
)

var (
	selfID  = meshnet.TestID("self")
	otherID = meshnet.TestID("other")
	self    = selfID.String()
	other   = otherID.String()
	// t0 is when the test's records were made; catalog writes come later.
	t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

// root returns a distinct CID for each n.
func root(t testing.TB, n int) cid.Cid {
	t.Helper()
	c, err := cid.V1Builder{Codec: cid.DagCBOR, MhType: mh.SHA2_256}.Sum(fmt.Appendf(nil, "root %d", n))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// entry returns the catalog's version of key: E(owner, writer, epoch,
// root), live, written an hour after t0.
func entry(key, owner, writer string, epoch uint64, r cid.Cid) catalog.Entry {
	return catalog.Entry{
		Key: key, Root: r, Owner: owner, Epoch: epoch, Version: 7, Writer: writer,
		Size: 1 << 30, BlockSize: 64 << 10, Replicas: 3, Created: t0, Modified: t0.Add(time.Hour),
	}
}

// tomb returns a tombstone of key as Catalog.Delete writes it.
func tomb(key, owner, writer string, epoch uint64) catalog.Entry {
	return catalog.Entry{Key: key, Owner: owner, Epoch: epoch, Version: 9, Writer: writer, Deleted: true, Modified: t0.Add(time.Hour)}
}

func head(disk string, r cid.Cid) Local {
	return Local{Key: catalog.DiskKey(disk), Kind: KindDisk, Disk: disk, Root: r, Size: 1 << 30, BlockSize: 64 << 10, Replicas: 3, Created: t0}
}

func replica(disk, name string, r cid.Cid) Local {
	return Local{Key: catalog.ReplicaKey(disk, name), Kind: KindReplica, Disk: disk, Name: name, Root: r,
		Size: 1 << 30, BlockSize: 64 << 10, Replicas: 3, Created: t0}
}

func spacesuit(name string, v uint64, r cid.Cid) Local {
	return Local{Key: catalog.SpacesuitKey(name, v), Kind: KindSpacesuit, Disk: name, Name: fmt.Sprint(v), Root: r,
		Size: 1 << 30, BlockSize: 64 << 10, Replicas: volume.DefaultReplicas, Created: t0}
}

// withReplicas returns e naming n copies.
func withReplicas(e catalog.Entry, n int) catalog.Entry {
	e.Replicas = n
	return e
}

// published is the entry Decide publishes for l: owner, epoch.
func published(l Local, owner string, epoch uint64) catalog.Entry {
	return catalog.Entry{Key: l.Key, Root: l.Root, Owner: owner, Epoch: epoch, Size: l.Size, BlockSize: l.BlockSize,
		Replicas: l.Replicas, Sync: l.Sync, Created: l.Created}
}

// withHeld returns e naming held as its held root.
func withHeld(e catalog.Entry, held cid.Cid) catalog.Entry {
	e.Held = held
	return e
}

func view(es []catalog.Entry, ls []Local, pushes map[string]Pushes) View {
	v := View{Self: self, Catalog: map[string]catalog.Entry{}, Local: map[string]Local{}, Pushes: pushes, TombSeen: map[string]time.Time{}}
	for _, e := range es {
		v.Catalog[e.Key] = e
		if e.Deleted && !e.Modified.IsZero() {
			v.TombSeen[e.Key] = e.Modified // seen here when written, on one clock
		}
	}
	for _, l := range ls {
		v.Local[l.Key] = l
	}
	return v
}

// diffActions is a readable diff of two action lists, one line per action.
func diffActions(got, want []Action) string {
	line := func(a Action) string {
		return fmt.Sprintf("%s %s entry=%+v local=%+v", a.Op, a.Key, a.Entry, a.Local)
	}
	var b strings.Builder
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = line(got[i])
		}
		if i < len(want) {
			w = line(want[i])
		}
		if g != w {
			fmt.Fprintf(&b, "action %d:\n  got  %s\n  want %s\n", i, g, w)
		}
	}
	return b.String()
}

func checkActions(t *testing.T, got, want []Action) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("actions differ:\n%s", diffActions(got, want))
	}
}

// TestDecide holds a row for every case of the reconcile decision (plan
// §3.2). S is this node, O another one; E(owner, writer, epoch, root).
func TestDecide(t *testing.T) {
	r0, r1, r2, r3, r5 := root(t, 0), root(t, 1), root(t, 2), root(t, 3), root(t, 5)
	vm, mon := catalog.DiskKey("vm"), catalog.ReplicaKey("vm", "mon")
	suit := catalog.SpacesuitKey("u", 1)

	hR1, hR2, hR5, hUndef := head("vm", r1), head("vm", r2), head("vm", r5), head("vm", cid.Undef)
	repR1, repUndef := replica("vm", "mon", r1), replica("vm", "mon", cid.Undef)
	pruned := replica("vm", "repl-b-20260101", r1)
	suitR1 := spacesuit("u", 1, r1)
	headAfter := hR1
	headAfter.Created = t0.Add(2 * time.Hour) // made after the tombstone's hour

	e := func(key, owner, writer string, epoch uint64, r cid.Cid) catalog.Entry {
		return entry(key, owner, writer, epoch, r)
	}
	d5 := e(vm, other, self, 4, r3)
	d6 := e(vm, self, other, 4, r3)
	d7 := e(vm, other, other, 2, r3)
	d11 := tomb(vm, other, other, 3)
	d11NoTime := d11
	d11NoTime.Modified = time.Time{}
	// The remover's clock is 2 h ahead: its tombstone says t0+3h, while
	// this node saw it at t0+1h, before it made headAfter (t0+2h).
	d11Ahead := d11
	d11Ahead.Modified = t0.Add(3 * time.Hour)
	d12 := tomb(vm, self, self, 2)
	r3Entry := e(mon, other, other, 1, r0)
	r5Tomb := tomb(mon, self, self, 2)
	replicate := func(l Local) Action { return Action{Op: OpReplicate, Key: l.Key, Local: l} }
	publish := func(l Local, owner string, epoch uint64) Action {
		return Action{Op: OpPublish, Key: l.Key, Entry: published(l, owner, epoch), Local: l}
	}
	publishHeld := func(l Local, owner string, epoch uint64, held cid.Cid) Action {
		return Action{Op: OpPublish, Key: l.Key, Entry: withHeld(published(l, owner, epoch), held), Local: l}
	}
	r3Want := published(repR1, other, 1)
	fencedName := "fenced-e3-abcdef-20260101-000000"
	owned, fenced := withHeld(e(vm, self, self, 3, r1), r1), e(catalog.ReplicaKey("vm", fencedName), other, other, 3, r2)
	pushedR1 := map[string]Pushes{"vm": {Pushed: r1}}
	fencedDefault := replica("vm", fencedName, r2)
	fencedDefault.Replicas = volume.DefaultReplicas

	rows := []struct {
		name   string
		cat    []catalog.Entry
		local  []Local
		pushes map[string]Pushes
		seen   map[string]time.Time // View.TombSeen; nil: each tombstone seen at its Modified
		want   []Action
	}{
		{name: "D1 new disk", local: []Local{hR1},
			want: []Action{publish(hR1, self, 1), replicate(hR1)}},
		{name: "D2 up to date", cat: []catalog.Entry{e(vm, self, self, 3, r1)}, local: []Local{hR1},
			want: []Action{replicate(hR1)}},
		{name: "D2 up to date, pushed", cat: []catalog.Entry{withHeld(e(vm, self, self, 3, r1), r1)}, local: []Local{hR1},
			pushes: map[string]Pushes{"vm": {Pushed: r1}}},
		{name: "D2 up to date, push tried", cat: []catalog.Entry{withHeld(e(vm, self, self, 3, r1), r0)}, local: []Local{hR1},
			pushes: map[string]Pushes{"vm": {Pushed: r0, Tried: r1}}},
		{name: "D2 up to date, pushing", cat: []catalog.Entry{withHeld(e(vm, self, self, 3, r1), r0)}, local: []Local{hR1},
			pushes: map[string]Pushes{"vm": {Pushed: r0, Pushing: true}}},
		{name: "D2 root pushed: named held", cat: []catalog.Entry{withHeld(e(vm, self, self, 3, r1), r0)}, local: []Local{hR1},
			pushes: map[string]Pushes{"vm": {Pushed: r1}},
			want:   []Action{publishHeld(hR1, self, 3, r1)}},
		{name: "D2 restarted: the catalog's held root kept", cat: []catalog.Entry{withHeld(e(vm, self, self, 3, r1), r0)}, local: []Local{hR1},
			want: []Action{replicate(hR1)}},
		{name: "D3 new root", cat: []catalog.Entry{withHeld(e(vm, self, self, 3, r1), r1)}, local: []Local{hR2},
			pushes: map[string]Pushes{"vm": {Pushed: r1}},
			want:   []Action{publishHeld(hR2, self, 3, r1), replicate(hR2)}},
		{name: "D3 new root of a disk taken at its held root", cat: []catalog.Entry{withHeld(e(vm, self, other, 3, r1), r1)}, local: []Local{hR2},
			want: []Action{publishHeld(hR2, self, 3, r1), replicate(hR2)}},
		{name: "D4 empty disk", local: []Local{hUndef},
			want: []Action{publish(hUndef, self, 1)}},
		{name: "D5 handed over, old owner's side", cat: []catalog.Entry{d5}, local: []Local{hR5},
			want: []Action{{Op: OpGiveUp, Key: vm, Entry: d5, Local: hR5}}},
		{name: "D6 handover received", cat: []catalog.Entry{d6},
			want: []Action{{Op: OpAdopt, Key: vm, Entry: d6}}},
		{name: "D7 stale owner returns", cat: []catalog.Entry{d7}, local: []Local{hR5},
			want: []Action{{Op: OpGiveUp, Key: vm, Entry: d7, Local: hR5}}},
		// D8's rule is the driver's (a fresh Lookup on ErrFenced, see
		// TestFencedPublishGivesUpAgainstFreshEntry): Decide publishes
		// from the snapshot it is given.
		{name: "D8 publish from a stale snapshot", cat: []catalog.Entry{e(vm, self, self, 1, r1)}, local: []Local{hR2},
			pushes: map[string]Pushes{"vm": {Pushed: r2}},
			want:   []Action{publishHeld(hR2, self, 1, r2)}},
		{name: "D9 removed here", cat: []catalog.Entry{e(vm, self, self, 2, r1)},
			want: []Action{{Op: OpTombstone, Key: vm, Entry: e(vm, self, self, 2, r1)}}},
		// Decide cannot tell a take not yet adopted from a removal: the
		// driver holds its lock across the take's Put and adopt.
		{name: "D10 taken, not yet adopted", cat: []catalog.Entry{e(vm, self, self, 3, r1)},
			want: []Action{{Op: OpTombstone, Key: vm, Entry: e(vm, self, self, 3, r1)}}},
		{name: "D11 late tombstone of a held disk (changed: was a publish)", cat: []catalog.Entry{d11}, local: []Local{hR1},
			want: []Action{{Op: OpGiveUp, Key: vm, Entry: d11, Local: hR1}}},
		{name: "D11 disk made after the removal", cat: []catalog.Entry{d11}, local: []Local{headAfter},
			want: []Action{publish(headAfter, self, 3), replicate(headAfter)}},
		{name: "D11 tombstone with no time seen here", cat: []catalog.Entry{d11NoTime}, local: []Local{hR1},
			want: []Action{publish(hR1, self, 3), replicate(hR1)}},
		{name: "D11 disk made after the removal was seen, remover's clock ahead", cat: []catalog.Entry{d11Ahead}, local: []Local{headAfter},
			seen: map[string]time.Time{vm: t0.Add(time.Hour)},
			want: []Action{publish(headAfter, self, 3), replicate(headAfter)}},
		{name: "D11 late tombstone seen after the head was made, remover's clock behind", cat: []catalog.Entry{d11}, local: []Local{headAfter},
			seen: map[string]time.Time{vm: t0.Add(3 * time.Hour)},
			want: []Action{{Op: OpGiveUp, Key: vm, Entry: d11, Local: headAfter}}},
		{name: "D12 own tombstone, re-created", cat: []catalog.Entry{d12}, local: []Local{hR1},
			pushes: map[string]Pushes{"vm": {Pushed: r1}},
			want:   []Action{publishHeld(hR1, self, 2, r1)}},
		{name: "D13 tombstone", cat: []catalog.Entry{tomb(vm, other, other, 3)}},
		{name: "D13 own tombstone", cat: []catalog.Entry{d12}},
		{name: "D14 moved away", cat: []catalog.Entry{e(vm, other, self, 5, r1)}},
		{name: "R1 new replica", local: []Local{repR1},
			want: []Action{publish(repR1, self, 1)}},
		{name: "R2 replica re-publish", cat: []catalog.Entry{e(mon, other, other, 1, r1)}, local: []Local{repR1}},
		{name: "R3 differing root", cat: []catalog.Entry{r3Entry}, local: []Local{repR1},
			want: []Action{{Op: OpPublish, Key: mon, Entry: r3Want, Local: repR1}}},
		{name: "R4 pruned elsewhere", cat: []catalog.Entry{tomb(pruned.Key, self, other, 1)}, local: []Local{pruned},
			want: []Action{{Op: OpForget, Key: pruned.Key, Entry: tomb(pruned.Key, self, other, 1), Local: pruned}}},
		{name: "R5 own tombstone, re-created", cat: []catalog.Entry{r5Tomb}, local: []Local{repR1},
			want: []Action{publish(repR1, self, 2)}},
		{name: "R6 replica of an empty disk", local: []Local{repUndef}},
		{name: "R7 removed by its writer, owner elsewhere", cat: []catalog.Entry{e(mon, other, self, 1, r1)},
			want: []Action{{Op: OpTombstone, Key: mon, Entry: e(mon, other, self, 1, r1)}}},
		{name: "R7 removed by its writer and owner", cat: []catalog.Entry{e(mon, self, self, 1, r1)},
			want: []Action{{Op: OpTombstone, Key: mon, Entry: e(mon, self, self, 1, r1)}}},
		{name: "R8 held elsewhere only", cat: []catalog.Entry{e(mon, self, other, 1, r1)}},
		{name: "S1 spacesuit re-publish", cat: []catalog.Entry{e(suit, other, other, 1, r1)}, local: []Local{suitR1}},
		{name: "S2 spacesuit removed elsewhere", cat: []catalog.Entry{tomb(suit, other, other, 1)}, local: []Local{suitR1},
			want: []Action{{Op: OpForget, Key: suit, Entry: tomb(suit, other, other, 1), Local: suitR1}}},
		{name: "S3 new spacesuit", local: []Local{suitR1},
			want: []Action{publish(suitR1, self, 1)}},
		{name: "P1 policy keys", cat: []catalog.Entry{
			{Key: catalog.ReplicateKey("vm", "site-b"), Owner: self, Epoch: 1, Version: 3, Writer: self},
			{Key: catalog.ReplicatePullKey("vm", "site-b"), Owner: other, Epoch: 1, Version: 3, Writer: self},
		}},
		{name: "X1 a head given up is not replicated (changed)", cat: []catalog.Entry{d7}, local: []Local{hR5},
			want: []Action{{Op: OpGiveUp, Key: vm, Entry: d7, Local: hR5}}},
		// Changed: the adopt brings the replica back from the catalog, so
		// the same pass does not tombstone it (it used to, and the next
		// pass published it again over its own tombstone while its other
		// holders forgot their copies).
		{name: "A1 no tombstone for a replica of a disk adopted in the pass (changed)", cat: []catalog.Entry{d6, e(mon, other, self, 1, r1)},
			want: []Action{{Op: OpAdopt, Key: vm, Entry: d6}}},
		// Changed: the owner adds a replica another node published after
		// the disk came here (the fenced replica its old owner kept once it
		// saw the take); it used to list only those it made or adopted.
		{name: "F1 a replica another node published of a disk owned and held here (changed: was nothing)",
			cat: []catalog.Entry{owned, fenced}, local: []Local{hR1}, pushes: pushedR1,
			want: []Action{{Op: OpAddReplica, Key: fenced.Key, Entry: fenced}}},
		{name: "F2 held here already", cat: []catalog.Entry{owned, fenced}, local: []Local{hR1, replica("vm", fencedName, r2)}, pushes: pushedR1},
		{name: "F3 removed here (its tombstone)", cat: []catalog.Entry{owned, tomb(fenced.Key, other, self, 3)}, local: []Local{hR1}, pushes: pushedR1},
		{name: "F4 of a disk owned elsewhere", cat: []catalog.Entry{e(vm, other, other, 3, r1), fenced}},
		{name: "F5 of a disk owned here, not held (taken, not adopted yet)", cat: []catalog.Entry{e(vm, self, self, 3, r1), fenced},
			want: []Action{{Op: OpTombstone, Key: vm, Entry: e(vm, self, self, 3, r1)}}},
		{name: "F6 written here, not held: removed here, tombstoned", cat: []catalog.Entry{owned, e(fenced.Key, other, self, 3, r2)},
			local: []Local{hR1}, pushes: pushedR1,
			want: []Action{{Op: OpTombstone, Key: fenced.Key, Entry: e(fenced.Key, other, self, 3, r2)}}},
		{name: "F7 a replica of an empty root", cat: []catalog.Entry{owned, e(fenced.Key, other, other, 3, cid.Undef)}, local: []Local{hR1}, pushes: pushedR1},
		// Changed: only fenced replicas are added; an archive site's
		// pull-mode state is that site's, and the owner listing it would
		// tombstone it on replica rm.
		{name: "F8 another node's pull-mode replication state (changed: was added)",
			cat:   []catalog.Entry{owned, e(catalog.ReplicaKey("vm", "repl-site-b-20260101-000000-pull"), other, other, 3, r2)},
			local: []Local{hR1}, pushes: pushedR1},
		// A fenced replica published once its head is gone here, when the
		// volumes give it the default copies (2): it keeps its disk's 3.
		{name: "F10 a replica of a disk not held keeps the disk's copies", cat: []catalog.Entry{e(vm, other, other, 3, r1)},
			local: []Local{fencedDefault},
			want:  []Action{{Op: OpPublish, Key: fencedDefault.Key, Entry: withReplicas(published(fencedDefault, self, 1), 3), Local: fencedDefault}}},
		{name: "F9 a name that only begins like a fenced one",
			cat:   []catalog.Entry{owned, e(catalog.ReplicaKey("vm", "fenced-extra"), other, other, 3, r2)},
			local: []Local{hR1}, pushes: pushedR1},
		{name: "order: adopts, per key, tombstones, replicates",
			cat: []catalog.Entry{
				e(catalog.DiskKey("z"), self, other, 2, r1),               // adopt
				e(catalog.DiskKey("b"), self, other, 2, r1),               // adopt
				tomb(catalog.ReplicaKey("a", "x"), other, other, 1),       // forget
				e(catalog.DiskKey("c"), other, other, 3, r2),              // give up
				e(catalog.ReplicaKey("old", "y"), self, self, 1, r1),      // tombstone
				e(catalog.DiskKey("gone"), self, self, 1, r1),             // tombstone
				e(catalog.ReplicateKey("a", "site-b"), self, self, 1, r1), // policy: nothing
			},
			local: []Local{head("d", r3), head("c", r5), replica("a", "x", r1), head("a", r2)},
			want: []Action{
				{Op: OpAdopt, Key: "disk/b", Entry: e(catalog.DiskKey("b"), self, other, 2, r1)},
				{Op: OpAdopt, Key: "disk/z", Entry: e(catalog.DiskKey("z"), self, other, 2, r1)},
				publish(head("a", r2), self, 1),
				{Op: OpGiveUp, Key: "disk/c", Entry: e(catalog.DiskKey("c"), other, other, 3, r2), Local: head("c", r5)},
				publish(head("d", r3), self, 1),
				{Op: OpForget, Key: "replica/a/x", Entry: tomb(catalog.ReplicaKey("a", "x"), other, other, 1), Local: replica("a", "x", r1)},
				{Op: OpTombstone, Key: "disk/gone", Entry: e(catalog.DiskKey("gone"), self, self, 1, r1)},
				{Op: OpTombstone, Key: "replica/old/y", Entry: e(catalog.ReplicaKey("old", "y"), self, self, 1, r1)},
				replicate(head("a", r2)),
				replicate(head("d", r3)),
			}},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			v := view(row.cat, row.local, row.pushes)
			if row.seen != nil {
				v.TombSeen = row.seen
			}
			checkActions(t, Decide(v), row.want)
			// DecideKeys applies the same rules key by key.
			for key := range v.Catalog {
				checkActions(t, DecideKeys(v, key), actionsFor(row.want, key))
			}
			for key := range v.Local {
				checkActions(t, DecideKeys(v, key), actionsFor(row.want, key))
			}
		})
	}
}

// actionsFor returns the actions of as for key, in order.
func actionsFor(as []Action, key string) []Action {
	var out []Action
	for _, a := range as {
		if a.Key == key {
			out = append(out, a)
		}
	}
	return out
}

func TestDecideKeysOnlyThoseKeys(t *testing.T) {
	r1, r2 := root(t, 1), root(t, 2)
	v := view(
		[]catalog.Entry{entry(catalog.DiskKey("gone"), self, self, 1, r1), entry(catalog.DiskKey("mine"), self, other, 2, r1)},
		[]Local{head("a", r1), head("b", r2)}, nil)
	want := []Action{
		{Op: OpPublish, Key: "disk/b", Entry: published(head("b", r2), self, 1), Local: head("b", r2)},
		{Op: OpTombstone, Key: "disk/gone", Entry: entry(catalog.DiskKey("gone"), self, self, 1, r1)},
		{Op: OpReplicate, Key: "disk/b", Local: head("b", r2)},
	}
	checkActions(t, DecideKeys(v, "disk/b", "disk/gone", "disk/unknown"), want)
	checkActions(t, DecideKeys(v), nil)
}

// D8: a publish refused as fenced gives up against the version that fenced
// it, which arrived after the View was taken: a fresh Lookup, not the
// snapshot's entry (which would name the replica after the old epoch).
func TestFencedPublishGivesUpAgainstFreshEntry(t *testing.T) {
	r1, r2, r3 := root(t, 1), root(t, 2), root(t, 3)
	cat := catalog.New(self)
	if _, err := cat.Put(catalog.Entry{Key: "disk/vm", Root: r1, Owner: self, Epoch: 1, Size: 1 << 30, BlockSize: 64 << 10, Replicas: 3, Created: t0}); err != nil {
		t.Fatal(err)
	}
	v := view(cat.Snapshot(), []Local{head("vm", r2)}, map[string]Pushes{"vm": {Pushed: r2}})
	acts := Decide(v)
	if len(acts) != 1 || acts[0].Op != OpPublish {
		t.Fatalf("got %v, want one publish", acts)
	}
	taken := entry("disk/vm", other, other, 2, r3)
	taken.Version = 100
	cat.Merge([]catalog.Entry{taken}) // another node took the disk meanwhile
	if _, err := cat.Put(acts[0].Entry); !errors.Is(err, catalog.ErrFenced) {
		t.Fatalf("put of the stale decision: got %v, want ErrFenced", err)
	}
	fresh, ok := cat.Lookup("disk/vm")
	if !ok || fresh.Epoch != 2 || fresh.Owner != other {
		t.Fatalf("fresh lookup: got %+v, %v; want epoch 2 owned by other", fresh, ok)
	}
	// Deciding again on the fresh view gives the same give-up.
	v.Catalog["disk/vm"] = fresh
	checkActions(t, Decide(v), []Action{{Op: OpGiveUp, Key: "disk/vm", Entry: fresh, Local: head("vm", r2)}})
}

// T1: two nodes take the same disk at the same epoch; merged both ways, the
// catalogs keep the take with the higher Lamport version (the later writer,
// not the first taker), and only the other taker gives its head up.
func TestDecideTwoTakers(t *testing.T) {
	a, b, c := meshnet.TestID("a"), meshnet.TestID("b"), meshnet.TestID("c")
	r0, rb, rc := root(t, 0), root(t, 10), root(t, 12)
	catA, catB, catC := catalog.New(a.String()), catalog.New(b.String()), catalog.New(c.String())
	e0, err := catA.Put(catalog.Entry{Key: "disk/vm", Root: r0, Owner: a.String(), Epoch: 1, Size: 1 << 30, BlockSize: 64 << 10, Replicas: 3, Created: t0})
	if err != nil {
		t.Fatal(err)
	}
	catB.Merge([]catalog.Entry{e0})
	catC.Merge([]catalog.Entry{e0})
	// C has seen more writes: its clock is ahead of B's.
	seen := entry(catalog.ReplicaKey("other", "x"), a.String(), a.String(), 1, r0)
	seen.Version = e0.Version + 5
	catC.Merge([]catalog.Entry{seen})
	take := func(cat *catalog.Catalog, id meshnet.PeerID) catalog.Entry {
		cur, ok := cat.Lookup("disk/vm")
		want, err := DecideTake("vm", cur, ok, id, false, false)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := cat.Put(want)
		if err != nil {
			t.Fatal(err)
		}
		return stored
	}
	eb, ec := take(catB, b), take(catC, c)
	if eb.Epoch != 2 || ec.Epoch != 2 || ec.Version <= eb.Version {
		t.Fatalf("takes: B epoch %d version %d, C epoch %d version %d; want both epoch 2, C's version higher",
			eb.Epoch, eb.Version, ec.Epoch, ec.Version)
	}
	catB.Merge([]catalog.Entry{ec})
	catC.Merge([]catalog.Entry{eb})
	for name, cat := range map[string]*catalog.Catalog{"B": catB, "C": catC} {
		if got, _ := cat.Lookup("disk/vm"); !reflect.DeepEqual(got, ec) {
			t.Fatalf("%s after merging: got %+v, want C's take %+v", name, got, ec)
		}
	}
	snap := func(cat *catalog.Catalog) map[string]catalog.Entry {
		m := map[string]catalog.Entry{}
		for _, e := range cat.Snapshot() {
			m[e.Key] = e
		}
		return m
	}
	// B wrote rb after its take; it gives the head up (a fenced replica).
	onB := View{Self: b.String(), Catalog: snap(catB), Local: map[string]Local{"disk/vm": head("vm", rb)}}
	checkActions(t, Decide(onB), []Action{{Op: OpGiveUp, Key: "disk/vm", Entry: ec, Local: head("vm", rb)}})
	// C wrote rc after its take; it publishes it at the same epoch.
	onC := View{Self: c.String(), Catalog: snap(catC), Local: map[string]Local{"disk/vm": head("vm", rc)},
		Pushes: map[string]Pushes{"vm": {Pushed: rc}}}
	checkActions(t, Decide(onC), []Action{{Op: OpPublish, Key: "disk/vm", Entry: withHeld(published(head("vm", rc), c.String(), 2), rc), Local: head("vm", rc)}})
}

func TestLocals(t *testing.T) {
	r1 := root(t, 1)
	rs := []volume.Record{
		{Disk: "vm", Root: r1, Size: 10, BlockSize: 2, Replicas: 3, Sync: true, Created: t0},
		{Disk: "vm", Replica: "mon", Root: r1, Size: 10, BlockSize: 2, Replicas: 3, Created: t0},
		{Disk: "u", Replica: "4", Spacesuit: true, Root: r1, Size: 10, BlockSize: 2, Replicas: 3, Created: t0},
		{Disk: "bad", Replica: "x", Spacesuit: true, Root: r1},
	}
	want := map[string]Local{
		"disk/vm":         {Key: "disk/vm", Kind: KindDisk, Disk: "vm", Root: r1, Size: 10, BlockSize: 2, Replicas: 3, Sync: true, Created: t0},
		"replica/vm/mon":  {Key: "replica/vm/mon", Kind: KindReplica, Disk: "vm", Name: "mon", Root: r1, Size: 10, BlockSize: 2, Replicas: 3, Created: t0},
		"spacesuit/u@4":   {Key: "spacesuit/u@4", Kind: KindSpacesuit, Disk: "u", Name: "4", Root: r1, Size: 10, BlockSize: 2, Replicas: 3, Created: t0},
		"spacesuit/bad@0": {Key: "spacesuit/bad@0", Kind: KindSpacesuit, Disk: "bad", Name: "x", Root: r1},
	}
	if got := Locals(rs); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestDecideMove(t *testing.T) {
	r1, r2 := root(t, 1), root(t, 2)
	owned := entry("disk/vm", self, self, 3, r1)
	moved := owned
	moved.Root, moved.Owner, moved.Epoch = r2, other, 4
	movedEmpty := moved
	movedEmpty.Root = cid.Undef
	rows := []struct {
		name      string
		e         catalog.Entry
		found     bool
		to        meshnet.PeerID
		toAlive   bool
		committed cid.Cid
		want      catalog.Entry
		kind      error
		msg       string
	}{
		{name: "M1 to self", e: owned, found: true, to: selfID, toAlive: true, committed: r2,
			kind: volume.ErrInvalid, msg: `move: disk "vm" is already on this node: invalid argument`},
		{name: "M2 to a member not alive", e: owned, found: true, to: otherID, committed: r2,
			kind: volume.ErrNotFound, msg: "move: " + other + " is not a live member of the mesh"},
		{name: "M3 not published yet", to: otherID, toAlive: true, committed: r2,
			kind: ErrConflict, msg: `move: disk "vm" is not published as owned by this node yet, try again`},
		{name: "M4 owned elsewhere", e: entry("disk/vm", other, other, 3, r1), found: true, to: otherID, toAlive: true, committed: r2,
			kind: ErrConflict, msg: `move: disk "vm" is not published as owned by this node yet, try again`},
		{name: "M4 removed", e: tomb("disk/vm", self, self, 3), found: true, to: otherID, toAlive: true, committed: r2,
			kind: ErrConflict, msg: `move: disk "vm" is not published as owned by this node yet, try again`},
		{name: "M5 handed over", e: owned, found: true, to: otherID, toAlive: true, committed: r2, want: moved},
		{name: "M5 empty disk handed over", e: owned, found: true, to: otherID, toAlive: true, want: movedEmpty},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			got, err := DecideMove("vm", row.e, row.found, selfID, row.to, row.toAlive, volume.DiskInfo{Root: row.committed})
			checkDecision(t, got, err, row.want, row.kind, row.msg)
		})
	}
}

func TestDecideTake(t *testing.T) {
	r1 := root(t, 1)
	theirs := entry("disk/vm", other, other, 3, r1)
	taken := theirs
	taken.Owner, taken.Epoch = self, 4
	rows := []struct {
		name              string
		e                 catalog.Entry
		found             bool
		ownerAlive, force bool
		want              catalog.Entry
		kind              error
		msg               string
	}{
		{name: "K1 unknown disk", kind: volume.ErrNotFound, msg: `take: disk "vm": not found`},
		{name: "K1 removed disk", e: tomb("disk/vm", other, other, 3), found: true, kind: volume.ErrNotFound, msg: `take: disk "vm": not found`},
		{name: "K2 owned here", e: entry("disk/vm", self, other, 3, r1), found: true,
			kind: volume.ErrInvalid, msg: `take: disk "vm" is already owned by this node: invalid argument`},
		{name: "K3 owner alive", e: theirs, found: true, ownerAlive: true,
			kind: ErrConflict, msg: `take: the owner of disk "vm", ` + other + `, is alive: use weft disk move on it, or --force`},
		{name: "K4 owner dead", e: theirs, found: true, want: taken},
		{name: "K4 owner alive, forced", e: theirs, found: true, ownerAlive: true, force: true, want: taken},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			got, err := DecideTake("vm", row.e, row.found, selfID, row.ownerAlive, row.force)
			checkDecision(t, got, err, row.want, row.kind, row.msg)
		})
	}
}

func checkDecision(t *testing.T, got catalog.Entry, err error, want catalog.Entry, kind error, msg string) {
	t.Helper()
	if kind != nil {
		if !errors.Is(err, kind) || err.Error() != msg {
			t.Fatalf("got error %v, want %q matching %v", err, msg, kind)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}
