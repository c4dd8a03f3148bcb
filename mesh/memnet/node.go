package memnet

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/weft-mesh/weft/mesh/meshnet"
)

// maxProtocolLen bounds the protocol name in a stream's header.
const maxProtocolLen = 256

// Node is one member of a Network seen through the network contract: it
// satisfies meshnet.Network. Its name on the Network (for Cut, Down, Up
// and the string-named Dialer) is string(Self()).
type Node struct {
	net   *Network
	id    meshnet.PeerID
	site  string
	state meshnet.StateDelegate // nil: no gossip state

	// Guarded by net.mu.
	handlers map[meshnet.Protocol]meshnet.Handler
	closed   bool
	active   *sync.WaitGroup // the handlers running for this node

	// Guarded by mu: the deliveries waiting for the notify goroutine.
	mu        sync.Mutex
	callbacks []func()
	changed   bool     // a membership change not yet reported
	inbox     [][]byte // broadcasts not yet delivered
	wake      chan struct{}
	done      chan struct{}
	notifying sync.WaitGroup
	closeOnce sync.Once
}

var _ meshnet.Network = (*Node)(nil)

// Join adds a member with identity id at site; state receives its gossip
// (nil: none). Every member learns of it at once, and it exchanges state
// with the members alive to it before Join returns. Joining an ID whose
// Node is open panics.
func (n *Network) Join(id meshnet.PeerID, site string, state meshnet.StateDelegate) *Node {
	nd := &Node{net: n, id: id, site: site, state: state,
		handlers: make(map[meshnet.Protocol]meshnet.Handler),
		wake:     make(chan struct{}, 1), done: make(chan struct{})}
	n.mu.Lock()
	if old, ok := n.nodes[string(id)]; ok && !old.closed {
		n.mu.Unlock()
		panic(fmt.Sprintf("memnet: %s joined twice", id))
	}
	n.nodes[string(id)] = nd
	n.mu.Unlock()
	n.Listen(string(id), nd.dispatch)
	n.mu.Lock()
	nd.active = n.peers[string(id)].active
	n.mu.Unlock()
	nd.notifying.Add(1)
	go nd.notifyLoop()
	n.membershipChanged()
	n.pushPullRound()
	return nd
}

// Self returns the node's identity.
func (nd *Node) Self() meshnet.PeerID { return nd.id }

// Handle serves p with h on streams opened from now on.
func (nd *Node) Handle(p meshnet.Protocol, h meshnet.Handler) {
	nd.net.mu.Lock()
	nd.handlers[p] = h
	nd.net.mu.Unlock()
}

// Open opens a stream to to speaking p. Like libp2p's negotiation it fails
// early: with meshnet.ErrUnsupported if to does not serve p, with
// meshnet.ErrUnreachable if to is unknown, closed, down or cut off, and
// with meshnet.ErrClosed once this node is closed. The stream is a
// meshnet.Resetter.
func (nd *Node) Open(ctx context.Context, to meshnet.PeerID, p meshnet.Protocol) (io.ReadWriteCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(p) > maxProtocolLen {
		return nil, fmt.Errorf("open %s to %s: protocol name over %d bytes", p, to, maxProtocolLen)
	}
	n := nd.net
	n.mu.Lock()
	s, err := nd.openLocked(to, p)
	n.mu.Unlock()
	if err != nil {
		return nil, err
	}
	header := binary.AppendUvarint(nil, uint64(len(p)))
	if _, err := s.Write(append(header, p...)); err != nil {
		s.Reset()
		return nil, fmt.Errorf("open %s to %s: %w", p, to, err)
	}
	return s, nil
}

// openLocked checks that to serves p and opens the stream. net.mu must be
// held.
func (nd *Node) openLocked(to meshnet.PeerID, p meshnet.Protocol) (*end, error) {
	if nd.closed {
		return nil, fmt.Errorf("open %s to %s: %w", p, to, ErrClosed)
	}
	target, ok := nd.net.nodes[string(to)]
	switch {
	case !ok:
		return nil, fmt.Errorf("open %s to %s: unknown peer: %w", p, to, ErrUnreachable)
	case target.closed:
		return nil, fmt.Errorf("open %s to %s: peer left: %w", p, to, ErrUnreachable)
	}
	if err := nd.net.reachableLocked(string(nd.id), string(to)); err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	if _, ok := target.handlers[p]; !ok {
		// Checked after reachability, as negotiation needs a connection.
		return nil, fmt.Errorf("open %s to %s: %w", p, to, meshnet.ErrUnsupported)
	}
	return nd.net.openLocked(string(nd.id), string(to))
}

// dispatch is the node's one listener: it reads the stream's header and
// runs the handler of the protocol it names.
func (nd *Node) dispatch(ctx context.Context, from string, rw io.ReadWriteCloser) {
	s := rw.(*end)
	p, err := readHeader(s)
	if err != nil {
		s.Reset()
		return
	}
	nd.net.mu.Lock()
	h, ok := nd.handlers[p]
	nd.net.mu.Unlock()
	if !ok {
		s.Reset()
		return
	}
	h(ctx, meshnet.PeerID(from), s)
}

// readHeader reads the protocol name without reading past it: the bytes
// after it are the handler's.
func readHeader(s io.Reader) (meshnet.Protocol, error) {
	length, err := binary.ReadUvarint(byteReader{s})
	if err != nil {
		return "", fmt.Errorf("stream header: %w", err)
	}
	if length > maxProtocolLen {
		return "", fmt.Errorf("stream header: protocol name of %d bytes", length)
	}
	name := make([]byte, length)
	if _, err := io.ReadFull(s, name); err != nil {
		return "", fmt.Errorf("stream header: %w", err)
	}
	return meshnet.Protocol(name), nil
}

// byteReader reads one byte at a time, unbuffered (a bufio.Reader would
// take the handler's bytes).
type byteReader struct{ r io.Reader }

func (b byteReader) ReadByte() (byte, error) {
	var c [1]byte
	_, err := io.ReadFull(b.r, c[:])
	return c[0], err
}

// Members returns every node ever joined, sorted by ID, in this node's
// view: a member is Left if it closed, Dead if it or this node is down or
// the link between them is cut, else Alive. There is no suspicion delay.
// Addrs holds the member's one address, its ID's text form (what Join
// takes).
func (nd *Node) Members() []meshnet.Member {
	n := nd.net
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]meshnet.Member, 0, len(n.nodes))
	for _, m := range n.nodes {
		out = append(out, meshnet.Member{ID: m.id, Site: m.site, State: n.stateLocked(nd, m),
			Addrs: []string{m.id.String()}, Self: m == nd})
	}
	slices.SortFunc(out, func(a, b meshnet.Member) int { return strings.Compare(string(a.ID), string(b.ID)) })
	return out
}

// stateLocked is y's state as x sees it. n.mu must be held.
func (n *Network) stateLocked(x, y *Node) meshnet.State {
	switch {
	case y.closed:
		return meshnet.StateLeft
	case x == y:
		return meshnet.StateAlive
	case n.down[string(x.id)] || n.down[string(y.id)] || n.cuts[pairOf(string(x.id), string(y.id))]:
		return meshnet.StateDead
	}
	return meshnet.StateAlive
}

// OnMembershipChange registers fn, called from the node's notify
// goroutine after every change (coalesced). A change that happened before
// the first registration is reported to it.
func (nd *Node) OnMembershipChange(fn func()) {
	nd.mu.Lock()
	nd.callbacks = append(nd.callbacks, fn)
	nd.mu.Unlock()
	nd.poke()
}

// Broadcast queues a copy of msg for the StateDelegate of every other
// member alive in this node's view; each receiver gets them in order.
func (nd *Node) Broadcast(msg []byte) {
	n := nd.net
	n.mu.Lock()
	var to []*Node
	for _, m := range n.nodes {
		if m != nd && m.state != nil && !nd.closed && n.stateLocked(nd, m) == meshnet.StateAlive {
			to = append(to, m)
		}
	}
	n.mu.Unlock()
	for _, m := range to {
		m.mu.Lock()
		m.inbox = append(m.inbox, slices.Clone(msg))
		m.mu.Unlock()
		m.poke()
	}
}

// Join counts the addrs that name a member alive in this node's view:
// every memnet node is a member from its Network.Join on, so there is
// nobody to contact. An addr names a member by its ID's text form
// (PeerID.String), alone or as the "/p2p/ID" suffix of an address.
func (nd *Node) Join(ctx context.Context, addrs []string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	alive := make(map[string]bool)
	for _, m := range nd.Members() {
		if m.State == meshnet.StateAlive {
			alive[m.ID.String()] = true
		}
	}
	if nd.isClosed() {
		return 0, fmt.Errorf("join: %w", ErrClosed)
	}
	answered := 0
	for _, a := range addrs {
		if i := strings.LastIndex(a, "/p2p/"); i >= 0 {
			a = a[i+len("/p2p/"):]
		}
		if alive[a] {
			answered++
		}
	}
	if answered == 0 && len(addrs) > 0 {
		return 0, fmt.Errorf("join: none of %d addresses is an alive member: %w", len(addrs), ErrUnreachable)
	}
	return answered, nil
}

func (nd *Node) isClosed() bool {
	nd.net.mu.Lock()
	defer nd.net.mu.Unlock()
	return nd.closed
}

// Close leaves the network: the others see the node Left, its streams
// break, and its handlers and notify goroutine have returned when Close
// does (so neither may call it). Its StateDelegate is not called after
// Close returns. The ID may then join again, as a new Node.
func (nd *Node) Close() error {
	nd.closeOnce.Do(func() {
		n := nd.net
		name := string(nd.id)
		n.mu.Lock()
		nd.closed = true
		active := nd.active
		if l, ok := n.peers[name]; ok {
			l.cancel()
			delete(n.peers, name)
		}
		broken := n.takeLinks(func(lk *link) bool { return lk.from == name || lk.to == name })
		n.mu.Unlock()
		breakLinks(broken)
		close(nd.done)
		nd.notifying.Wait()
		active.Wait()
		// A push-pull round that listed this node before it closed may
		// still be calling its delegate.
		n.pushPull.Lock()
		n.pushPull.Unlock()
		n.membershipChanged()
	})
	return nil
}

// poke wakes the notify goroutine.
func (nd *Node) poke() {
	select {
	case nd.wake <- struct{}{}:
	default:
	}
}

// notifyLoop delivers broadcasts and membership changes, with no lock
// held, until the node closes.
func (nd *Node) notifyLoop() {
	defer nd.notifying.Done()
	for {
		select {
		case <-nd.wake:
		case <-nd.done:
			return
		}
		nd.mu.Lock()
		msgs := nd.inbox
		nd.inbox = nil
		var fns []func()
		if nd.changed && len(nd.callbacks) > 0 {
			nd.changed = false
			fns = slices.Clone(nd.callbacks)
		}
		nd.mu.Unlock()
		for _, m := range msgs {
			nd.state.NotifyMsg(m)
		}
		for _, fn := range fns {
			fn()
		}
	}
}

// membershipChanged tells every open node that the membership changed.
func (n *Network) membershipChanged() {
	n.mu.Lock()
	var open []*Node
	for _, nd := range n.nodes {
		if !nd.closed {
			open = append(open, nd)
		}
	}
	n.mu.Unlock()
	for _, nd := range open {
		nd.mu.Lock()
		nd.changed = true
		nd.mu.Unlock()
		nd.poke()
	}
}

// pushPullRound makes every pair of open nodes with state that are alive
// to each other exchange their full state, both ways.
func (n *Network) pushPullRound() {
	n.pushPull.Lock()
	defer n.pushPull.Unlock()
	n.mu.Lock()
	var nodes []*Node
	for _, nd := range n.nodes {
		if !nd.closed && nd.state != nil {
			nodes = append(nodes, nd)
		}
	}
	slices.SortFunc(nodes, func(a, b *Node) int { return strings.Compare(string(a.id), string(b.id)) })
	type pairing struct{ a, b *Node }
	var pairs []pairing
	for i, a := range nodes {
		for _, b := range nodes[i+1:] {
			if n.stateLocked(a, b) == meshnet.StateAlive {
				pairs = append(pairs, pairing{a, b})
			}
		}
	}
	n.mu.Unlock()
	for _, p := range pairs {
		fromA, fromB := p.a.state.LocalState(), p.b.state.LocalState()
		p.b.state.MergeRemoteState(fromA)
		p.a.state.MergeRemoteState(fromB)
	}
}
