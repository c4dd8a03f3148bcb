package memnet

import (
	"context"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-mesh/weft/mesh/meshnet"
)

// setState is a toy StateDelegate: a set of strings merged on push-pull,
// and the broadcasts received in order.
type setState struct {
	mu   sync.Mutex
	set  map[string]bool
	msgs []string
}

func newSetState(items ...string) *setState {
	s := &setState{set: map[string]bool{}}
	for _, it := range items {
		s.set[it] = true
	}
	return s
}

func (s *setState) add(item string) {
	s.mu.Lock()
	s.set[item] = true
	s.mu.Unlock()
}

func (s *setState) items() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.set))
}

func (s *setState) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

func (s *setState) LocalState() []byte { return []byte(strings.Join(s.items(), "\n")) }

func (s *setState) MergeRemoteState(buf []byte) {
	for it := range strings.SplitSeq(string(buf), "\n") {
		if it != "" {
			s.add(it)
		}
	}
}

func (s *setState) NotifyMsg(buf []byte) {
	s.mu.Lock()
	s.msgs = append(s.msgs, string(buf))
	s.mu.Unlock()
}

// testNode is a joined node and its state.
type testNode struct {
	*Node
	label string
	state *setState
}

func (tn testNode) name() string { return string(tn.Self()) }

func joinAll(n *Network, names ...string) []testNode {
	var out []testNode
	for _, name := range names {
		st := newSetState(name)
		out = append(out, testNode{n.Join(meshnet.TestID(name), "site-"+name, st), name, st})
	}
	return out
}

// stateOf is member id's state in nd's view.
func stateOf(t *testing.T, nd *Node, id meshnet.PeerID) meshnet.State {
	t.Helper()
	for _, m := range nd.Members() {
		if m.ID == id {
			return m.State
		}
	}
	t.Fatalf("%s is not a member in %s's view", id, nd.Self())
	return ""
}

func wantStates(t *testing.T, from testNode, want map[testNode]meshnet.State) {
	t.Helper()
	for m, st := range want {
		if got := stateOf(t, from.Node, m.Self()); got != st {
			t.Errorf("%s sees %s %s, want %s", from.label, m.label, got, st)
		}
	}
}

func wantItems(t *testing.T, tn testNode, want ...string) {
	t.Helper()
	if got := tn.state.items(); !slices.Equal(got, want) {
		t.Fatalf("state %v, want %v", got, want)
	}
}

func TestNodeCutHealConverges(t *testing.T) {
	n := newTestNetwork(t)
	nodes := joinAll(n, "a", "b", "c")
	a, b, c := nodes[0], nodes[1], nodes[2]
	wantItems(t, c, "a", "b", "c") // Join exchanged state with every member
	n.Cut(a.name(), b.name())
	n.Cut(a.name(), c.name())
	wantStates(t, a, map[testNode]meshnet.State{a: meshnet.StateAlive, b: meshnet.StateDead, c: meshnet.StateDead})
	wantStates(t, b, map[testNode]meshnet.State{a: meshnet.StateDead, b: meshnet.StateAlive, c: meshnet.StateAlive})
	if _, err := a.Open(context.Background(), b.Self(), "/p"); !errors.Is(err, meshnet.ErrUnreachable) {
		t.Fatalf("Open across a cut: got %v, want ErrUnreachable", err)
	}

	a.state.add("from-a")
	b.state.add("from-b")
	n.Heal(a.name(), b.name())
	wantStates(t, a, map[testNode]meshnet.State{b: meshnet.StateAlive, c: meshnet.StateDead})
	wantItems(t, a, "a", "b", "c", "from-a", "from-b")
	wantItems(t, b, "a", "b", "c", "from-a", "from-b")
	n.Heal(a.name(), c.name())
	wantItems(t, c, "a", "b", "c", "from-a", "from-b")
}

func TestNodePeriodicPushPull(t *testing.T) {
	n := newTestNetwork(t)
	nodes := joinAll(n, "a", "b")
	nodes[0].state.add("late")
	n.SetPushPull(time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(nodes[1].state.items(), "late") {
		if time.Now().After(deadline) {
			t.Fatal("b did not learn a's state from periodic push-pull within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestNodeDownUp(t *testing.T) {
	n := newTestNetwork(t)
	nodes := joinAll(n, "a", "b", "c")
	a, b, c := nodes[0], nodes[1], nodes[2]
	b.Handle("/p", func(ctx context.Context, from meshnet.PeerID, s io.ReadWriteCloser) {})
	n.Down(b.name())
	wantStates(t, a, map[testNode]meshnet.State{b: meshnet.StateDead, c: meshnet.StateAlive})
	wantStates(t, b, map[testNode]meshnet.State{a: meshnet.StateDead, b: meshnet.StateAlive, c: meshnet.StateDead})
	if _, err := a.Open(context.Background(), b.Self(), "/p"); !errors.Is(err, meshnet.ErrUnreachable) {
		t.Fatalf("Open to a down node: got %v, want ErrUnreachable", err)
	}
	b.state.add("while-down")
	n.Up(b.name())
	wantStates(t, a, map[testNode]meshnet.State{b: meshnet.StateAlive})
	wantItems(t, a, "a", "b", "c", "while-down")
	s, err := a.Open(context.Background(), b.Self(), "/p")
	if err != nil {
		t.Fatalf("Open after Up: %v", err)
	}
	s.Close()
}

func TestNodeCloseLeaves(t *testing.T) {
	n := newTestNetwork(t)
	nodes := joinAll(n, "a", "b")
	a, b := nodes[0], nodes[1]
	a.Handle("/p", func(ctx context.Context, from meshnet.PeerID, s io.ReadWriteCloser) {})
	b.Handle("/p", func(ctx context.Context, from meshnet.PeerID, s io.ReadWriteCloser) { io.Copy(io.Discard, s) })
	s, err := a.Open(context.Background(), b.Self(), "/p")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	b.Close()
	wantStates(t, a, map[testNode]meshnet.State{b: meshnet.StateLeft})
	wantStates(t, b, map[testNode]meshnet.State{b: meshnet.StateLeft})
	if _, err := s.Read(make([]byte, 1)); err == nil || err == io.EOF {
		t.Fatalf("read on a stream to a closed node: got %v, want an error", err)
	}
	if _, err := a.Open(context.Background(), b.Self(), "/p"); !errors.Is(err, meshnet.ErrUnreachable) {
		t.Fatalf("Open to a closed node: got %v, want ErrUnreachable", err)
	}
	if _, err := b.Open(context.Background(), a.Self(), "/p"); !errors.Is(err, meshnet.ErrClosed) {
		t.Fatalf("Open from a closed node: got %v, want ErrClosed", err)
	}
	if _, err := b.Join(context.Background(), []string{a.Self().String()}); !errors.Is(err, meshnet.ErrClosed) {
		t.Fatalf("Join on a closed node: got %v, want ErrClosed", err)
	}
}

func TestNodeBroadcastOnlyToAlive(t *testing.T) {
	n := newTestNetwork(t)
	nodes := joinAll(n, "a", "b", "c")
	a, b, c := nodes[0], nodes[1], nodes[2]
	n.Cut(a.name(), c.name())
	a.Broadcast([]byte("one"))
	a.Broadcast([]byte("two"))
	// b's marker reaches c after anything a queued for it, as each
	// receiver gets its broadcasts in order.
	b.Broadcast([]byte("marker"))
	waitFor(t, "b gets a's broadcasts in order", func() bool { return slices.Equal(b.state.received(), []string{"one", "two"}) })
	// Each receiver gets the marker on its own: a's may come after c's.
	waitFor(t, "c gets b's marker", func() bool { return len(c.state.received()) > 0 })
	waitFor(t, "a gets b's marker", func() bool { return len(a.state.received()) > 0 })
	if got := c.state.received(); !slices.Equal(got, []string{"marker"}) {
		t.Fatalf("c, cut off from a, received %q, want only b's marker", got)
	}
	if got := a.state.received(); !slices.Equal(got, []string{"marker"}) {
		t.Fatalf("a received %q, want only b's marker (not its own)", got)
	}
}

func TestNodeMembershipCallbacks(t *testing.T) {
	n := newTestNetwork(t)
	a := joinAll(n, "a")[0]
	changed := make(chan struct{}, 1)
	a.OnMembershipChange(func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	waitFor(t, "a's own join reported to the first registration", func() bool { return len(changed) > 0 })
	<-changed
	b := joinAll(n, "b")[0]
	waitFor(t, "a membership callback after b joined", func() bool { return len(changed) > 0 })
	wantStates(t, a, map[testNode]meshnet.State{b: meshnet.StateAlive})
	if got := a.Members()[0]; got.Site == "" || len(got.Addrs) != 1 {
		t.Fatalf("member %+v: want a site and one address", got)
	}
	joined, err := a.Join(context.Background(), []string{b.Self().String(), "/ip4/127.0.0.1/tcp/1/p2p/" + b.Self().String(), "nobody"})
	if err != nil || joined != 2 {
		t.Fatalf("Join: %d, %v; want 2 answered", joined, err)
	}
	if _, err := a.Join(context.Background(), []string{"nobody"}); !errors.Is(err, meshnet.ErrUnreachable) {
		t.Fatalf("Join naming nobody: got %v, want ErrUnreachable", err)
	}
}

func TestNodeResetFromHandler(t *testing.T) {
	n := newTestNetwork(t)
	nodes := joinAll(n, "a", "b")
	a, b := nodes[0], nodes[1]
	b.Handle("/p", func(ctx context.Context, from meshnet.PeerID, s io.ReadWriteCloser) {
		s.Write([]byte("partial"))
		meshnet.Abort(s)
	})
	s, err := a.Open(context.Background(), b.Self(), "/p")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, err := io.ReadAll(s); !errors.Is(err, ErrReset) {
		t.Fatalf("read after the handler reset: got %v, want ErrReset", err)
	}
}

// waitFor polls cond for up to 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
