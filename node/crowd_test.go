package node

import (
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/test"
)

// TestCrowdTracker: the tracker lists a root's pullers in the order they
// joined, says which hold it all, wakes every puller on each change, and
// forgets the root once the last one leaves.
func TestCrowdTracker(t *testing.T) {
	root := testCID(t, 1)
	var tr crowdTracker
	var ps []*crowdPuller
	var want []string
	for range 3 {
		id, err := test.RandPeerID()
		if err != nil {
			t.Fatal(err)
		}
		p := &crowdPuller{id: id, notify: make(chan struct{}, 1)}
		if !tr.join(root, p) {
			t.Fatal("join refused")
		}
		ps, want = append(ps, p), append(want, id.String())
	}
	tr.finish(root, ps[0])
	tr.leave(root, ps[1])
	l := tr.list(root)
	if want := []string{want[0], want[2]}; !slices.Equal(l.Members, want) {
		t.Fatalf("members %v, want %v", l.Members, want)
	}
	if want := []string{ps[0].id.String()}; !slices.Equal(l.Done, want) {
		t.Fatalf("done %v, want %v", l.Done, want)
	}
	for i, p := range ps {
		select {
		case <-p.notify:
		default:
			t.Errorf("puller %d not woken", i)
		}
	}
	tr.leave(root, ps[0])
	tr.leave(root, ps[2])
	if len(tr.roots) != 0 {
		t.Fatalf("roots %v after every puller left, want none", tr.roots)
	}
	v := &crowdView{self: ps[0].id, changed: make(chan struct{})}
	v.set(crowdList{Members: []string{ps[0].id.String(), "not a peer", ps[2].id.String()}, Done: []string{ps[2].id.String()}})
	members, _ := v.Members()
	if want := []string{string(ps[0].id), string(ps[2].id)}; !slices.Equal(members, want) {
		t.Fatalf("view %v, want %v", members, want)
	}
	if pulling, _ := v.othersPulling(); pulling {
		t.Fatal("others pulling, want none: the other one holds the root")
	}
}
