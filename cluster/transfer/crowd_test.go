package transfer

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/meshnet"
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
		id := randPeerID(t)
		p := newCrowdPuller(id)
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

// TestCrowdTrackerOneEntryPerPeer: a peer that joins a root again takes
// its earlier entry's place, and that entry's stream is told to end.
func TestCrowdTrackerOneEntryPerPeer(t *testing.T) {
	root := testCID(t, 1)
	var tr crowdTracker
	id := randPeerID(t)
	first, again := newCrowdPuller(id), newCrowdPuller(id)
	if !tr.join(root, first) || !tr.join(root, again) {
		t.Fatal("join refused")
	}
	if l := tr.list(root); len(l.Members) != 1 {
		t.Fatalf("members %v after one peer joined twice, want it once", l.Members)
	}
	select {
	case <-first.replaced:
	default:
		t.Fatal("the earlier entry was not told it was replaced")
	}
	tr.leave(root, first) // its stream ends: the new entry stays
	if l := tr.list(root); len(l.Members) != 1 {
		t.Fatalf("members %v after the replaced entry left, want the new one", l.Members)
	}
}

// TestCrowdTrackerBoundsRoots: a tracker tracks at most maxCrowdRoots
// roots; pullers of a new root beyond that pull on their own, those of a
// root tracked still join.
func TestCrowdTrackerBoundsRoots(t *testing.T) {
	var tr crowdTracker
	id := randPeerID(t)
	for i := range maxCrowdRoots {
		if !tr.join(testCID(t, i), newCrowdPuller(id)) {
			t.Fatalf("join of root %d refused", i)
		}
	}
	if tr.join(testCID(t, maxCrowdRoots), newCrowdPuller(id)) {
		t.Fatalf("tracker took root %d, want at most %d", maxCrowdRoots+1, maxCrowdRoots)
	}
	other := randPeerID(t)
	if !tr.join(testCID(t, 0), newCrowdPuller(other)) {
		t.Fatal("join of a tracked root refused")
	}
}

// randPeerID returns a fresh valid peer ID.
func randPeerID(t *testing.T) meshnet.PeerID {
	t.Helper()
	return meshnet.TestID(rand.Text())
}

// serveTestCrowd runs serveCrowd for a puller on a pipe and returns the
// puller's end and a channel closed once serveCrowd returned.
func serveTestCrowd(t *testing.T, n *Service) (net.Conn, <-chan struct{}) {
	t.Helper()
	id := randPeerID(t)
	here, there := net.Pipe()
	t.Cleanup(func() { there.Close() })
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		n.serveCrowd(context.Background(), id, here)
	}()
	return there, ended
}

// ends waits for serveCrowd to return, failing after 20 s.
func ends(t *testing.T, ended <-chan struct{}, why string) {
	t.Helper()
	select {
	case <-ended:
	case <-time.After(20 * time.Second):
		t.Fatalf("serveCrowd still serving after 20 s: %s", why)
	}
}

func testCrowdNode(t *testing.T) (*Service, cid.Cid) {
	store := blockstore.NewMemory()
	b := blockstore.NewBlock(blockstore.CodecRaw, []byte("a root held here"))
	if err := store.Put(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	return &Service{log: slog.New(slog.DiscardHandler), store: store}, b.CID
}

func writeLine(t *testing.T, w io.Writer, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	if _, err := w.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
}

// TestServeCrowdRefusesRootsNotHeld: a join for a root the tracker does
// not hold is not tracked.
func TestServeCrowdRefusesRootsNotHeld(t *testing.T) {
	n, _ := testCrowdNode(t)
	c, ended := serveTestCrowd(t, n)
	writeLine(t, c, crowdJoin{Root: testCID(t, 7).String()})
	ends(t, ended, "joined for a root not held")
	if len(n.crowds.roots) != 0 {
		t.Fatalf("tracking %d roots, want none", len(n.crowds.roots))
	}
}

// TestServeCrowdDropsSilentPullers: a puller that never sends its join,
// and one that joins and never reads the lists, are dropped in time.
func TestServeCrowdDropsSilentPullers(t *testing.T) {
	n, root := testCrowdNode(t)
	_, ended := serveTestCrowd(t, n)
	ends(t, ended, "no join line sent")

	c, ended := serveTestCrowd(t, n)
	writeLine(t, c, crowdJoin{Root: root.String()}) // and never reads
	ends(t, ended, "a puller that never reads")
	if len(n.crowds.roots) != 0 {
		t.Fatalf("the puller that never reads is still listed: %v", n.crowds.list(root).Members)
	}
}
