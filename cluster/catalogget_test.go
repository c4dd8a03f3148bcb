package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/weft-mesh/weft/mesh/catalog"
)

// A take reads the disk's newest record from the live members first
// (torture, 2026-12-03): the taker b had missed the dead owner's last
// record, which named a newer held root r1, while c had merged it and
// collected the blocks only the older held root r0 reached. Taken at r0,
// the disk named a block no live member held.
func TestTakeStartsFromTheNewestRecordAnyMemberHolds(t *testing.T) {
	ctx := context.Background()
	hub := newTestHub(t)
	b := newTestNode(t, hub, "b")
	c := newTestNode(t, hub, "c")
	old := hub.join("old-owner")
	hub.setDown(old.Self(), true)
	r0 := b.importDisk(t, "r0", 2, "old!")
	r1 := b.importDisk(t, "r1", 2, "new!")

	owner := catalog.New(old.Self().String())
	rec := catalog.Entry{Key: catalog.DiskKey("vm"), Owner: old.Self().String(), Epoch: 1,
		Size: 1 << 20, BlockSize: 65536, Replicas: 2, Root: r0, Held: r0}
	older, err := owner.Put(rec)
	if err != nil {
		t.Fatal(err)
	}
	rec.Root, rec.Held = r1, r1
	newer, err := owner.Put(rec)
	if err != nil {
		t.Fatal(err)
	}
	b.cat.Merge([]catalog.Entry{older})
	c.cat.Merge([]catalog.Entry{older, newer})
	// A live member that does not answer (a version without the
	// question) is skipped: the take goes on with c's answer.
	hub.join("bare")

	e, err := b.Take(ctx, "vm", false)
	if err != nil {
		t.Fatalf("take: %v", err)
	}
	if asked, answered, _ := b.freshen(ctx, catalog.DiskKey("vm")); asked != 2 || answered != 1 {
		t.Errorf("asked %d members, %d answered; want c and bare asked, c alone answering", asked, answered)
	}
	if !e.Root.Equals(r1) || e.Epoch != 2 {
		t.Fatalf("take put root %s at epoch %d, want the newest held root %s (c's record) at epoch 2, not %s (b's stale one)", e.Root, e.Epoch, r1, r0)
	}
}

// A member answers a question about a key it does not hold with no entry,
// and refuses a question whose key is empty or too long.
func TestCatalogGetAnswers(t *testing.T) {
	ctx := context.Background()
	hub := newTestHub(t)
	b := newTestNode(t, hub, "b")
	c := newTestNode(t, hub, "c")
	msg, err := catalogGetMessage(catalog.DiskKey("nothing"))
	if err != nil {
		t.Fatal(err)
	}
	es, err := b.askEntry(ctx, c.self, msg)
	if err != nil || len(es) != 0 {
		t.Fatalf("question about an unknown key: %v, %v; want no entry", es, err)
	}
	c.put(t, catalog.Entry{Key: catalog.DiskKey("vm"), Owner: c.selfStr, Epoch: 1, Size: 1 << 20, BlockSize: 65536, Replicas: 2})
	msg, _ = catalogGetMessage(catalog.DiskKey("vm"))
	es, err = b.askEntry(ctx, c.self, msg)
	if err != nil || len(es) != 1 || es[0].Owner != c.selfStr {
		t.Fatalf("question about vm: %v, %v; want c's record", es, err)
	}
	for _, bad := range [][]byte{{0, 0}, binary.BigEndian.AppendUint16(nil, maxCatalogGetKey+1)} {
		if _, err := b.askEntry(ctx, c.self, append(bad, bytes.Repeat([]byte("k"), 8)...)); err == nil {
			t.Errorf("question %x answered, want it refused", bad)
		}
	}
	if _, err := catalogGetMessage(string(bytes.Repeat([]byte("k"), maxCatalogGetKey+1))); err == nil {
		t.Error("a question with a key over the bound was framed")
	}
}
