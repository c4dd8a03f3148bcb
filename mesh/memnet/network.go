package memnet

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/weft-mesh/weft/mesh/meshnet"
)

// The errors are meshnet's, so that callers of a Node and of the Dialer
// match them alike.
var (
	// ErrUnreachable means a dial failed because the target has no
	// listener, either side is down, or the link between them is cut.
	ErrUnreachable = meshnet.ErrUnreachable
	// ErrClosed means the network (or the dialling Node) was closed.
	ErrClosed = meshnet.ErrClosed
)

// Handler serves one incoming stream from peer from. ctx ends when the
// serving peer goes down or the network closes. The network closes rw when
// the handler returns.
type Handler func(ctx context.Context, from string, rw io.ReadWriteCloser)

// Network is a set of named peers that open streams to each other. All
// methods are safe for concurrent use.
type Network struct {
	mu       sync.Mutex
	peers    map[string]*listener
	down     map[string]bool
	cuts     map[pair]bool
	links    map[*link]struct{}
	closed   bool
	handlers sync.WaitGroup
	// nodes are the members joined with Join, by string(PeerID).
	nodes map[string]*Node
	// pushPull serializes push-pull rounds, so that Node.Close can wait
	// for the round that may be calling its StateDelegate.
	pushPull sync.Mutex
	// stopPushPull ends the anti-entropy loop started by SetPushPull.
	stopPushPull chan struct{}
	loops        sync.WaitGroup
}

type listener struct {
	handler Handler
	ctx     context.Context // ends when the peer goes down or the network closes
	cancel  context.CancelFunc
	active  *sync.WaitGroup // the handlers running for this peer
}

// link is one open stream between two peers.
type link struct {
	from, to string
	dialEnd  *end
}

// pair names a link between two peers, whichever dialled.
type pair struct{ a, b string }

func pairOf(a, b string) pair {
	if a > b {
		a, b = b, a
	}
	return pair{a, b}
}

// New returns an empty network.
func New() *Network {
	return &Network{
		peers: make(map[string]*listener),
		down:  make(map[string]bool),
		cuts:  make(map[pair]bool),
		links: make(map[*link]struct{}),
		nodes: make(map[string]*Node),
	}
}

// Listen registers peer and makes handler serve each stream dialled to it,
// in a goroutine of its own. Listening again replaces the handler for
// streams opened from then on.
func (n *Network) Listen(peer string, handler Handler) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := &listener{handler: handler}
	if old, ok := n.peers[peer]; ok {
		l.ctx, l.cancel, l.active = old.ctx, old.cancel, old.active
	} else {
		l.ctx, l.cancel = context.WithCancel(context.Background())
		l.active = new(sync.WaitGroup)
		if n.down[peer] || n.closed {
			l.cancel()
		}
	}
	n.peers[peer] = l
}

// Dialer returns the dialer peer from uses to open streams. It satisfies
// exchange.Dialer.
func (n *Network) Dialer(from string) *Dialer {
	return &Dialer{net: n, from: from}
}

// Dialer opens streams from one peer of a Network.
type Dialer struct {
	net  *Network
	from string
}

// OpenStream connects to peer's handler and returns the dialling end. It
// fails with an error matching ErrUnreachable if the peer has no listener,
// either side is down, or the link is cut.
func (d *Dialer) OpenStream(ctx context.Context, peer string) (io.ReadWriteCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n := d.net
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.openLocked(d.from, peer)
}

// reachableLocked says why from cannot dial to, if it cannot. n.mu must
// be held.
func (n *Network) reachableLocked(from, to string) error {
	if n.closed {
		return ErrClosed
	}
	_, ok := n.peers[to]
	switch {
	case !ok:
		return fmt.Errorf("dial %s from %s: no listener: %w", to, from, ErrUnreachable)
	case n.down[from]:
		return fmt.Errorf("dial %s from %s: %s is down: %w", to, from, from, ErrUnreachable)
	case n.down[to]:
		return fmt.Errorf("dial %s from %s: %s is down: %w", to, from, to, ErrUnreachable)
	case n.cuts[pairOf(from, to)]:
		return fmt.Errorf("dial %s from %s: link cut: %w", to, from, ErrUnreachable)
	}
	return nil
}

// openLocked starts to's handler on a new stream and returns the dialling
// end. n.mu must be held.
func (n *Network) openLocked(from, to string) (*end, error) {
	if err := n.reachableLocked(from, to); err != nil {
		return nil, err
	}
	l := n.peers[to]
	lk := &link{from: from, to: to}
	dialEnd, listenEnd := newStream(func(*end) { n.forget(lk) })
	lk.dialEnd = dialEnd
	n.links[lk] = struct{}{}
	handler, ctx := l.handler, l.ctx // Listen and Up replace them under n.mu
	n.handlers.Add(1)
	l.active.Add(1)
	go func() {
		defer n.handlers.Done()
		defer l.active.Done()
		defer listenEnd.Close()
		handler(ctx, from, listenEnd)
	}()
	return dialEnd, nil
}

func (n *Network) forget(lk *link) {
	n.mu.Lock()
	delete(n.links, lk)
	n.mu.Unlock()
}

// Cut partitions a from b: dials between them fail and the streams open
// between them break.
func (n *Network) Cut(a, b string) {
	n.mu.Lock()
	n.cuts[pairOf(a, b)] = true
	broken := n.takeLinks(func(lk *link) bool { return pairOf(lk.from, lk.to) == pairOf(a, b) })
	n.mu.Unlock()
	breakLinks(broken)
	n.membershipChanged()
}

// Heal undoes Cut(a, b). Broken streams stay broken; new dials succeed;
// the Nodes alive to each other exchange their state.
func (n *Network) Heal(a, b string) {
	n.mu.Lock()
	delete(n.cuts, pairOf(a, b))
	n.mu.Unlock()
	n.membershipChanged()
	n.pushPullRound()
}

// Down makes peer unreachable: dials to and from it fail, its streams
// break, and the contexts of its running handlers end.
func (n *Network) Down(peer string) {
	n.mu.Lock()
	n.down[peer] = true
	if l, ok := n.peers[peer]; ok {
		l.cancel()
	}
	broken := n.takeLinks(func(lk *link) bool { return lk.from == peer || lk.to == peer })
	n.mu.Unlock()
	breakLinks(broken)
	n.membershipChanged()
}

// Up brings a peer taken Down back; its listener serves again and the
// Nodes alive to each other exchange their state.
func (n *Network) Up(peer string) {
	n.mu.Lock()
	if !n.down[peer] {
		n.mu.Unlock()
		return
	}
	delete(n.down, peer)
	if l, ok := n.peers[peer]; ok && !n.closed {
		l.ctx, l.cancel = context.WithCancel(context.Background())
	}
	n.mu.Unlock()
	n.membershipChanged()
	n.pushPullRound()
}

// Close closes every Node, breaks every stream, refuses dials from now on,
// ends handler contexts and waits for the handlers to return.
func (n *Network) Close() {
	n.SetPushPull(0)
	n.loops.Wait()
	n.mu.Lock()
	nodes := make([]*Node, 0, len(n.nodes))
	for _, nd := range n.nodes {
		nodes = append(nodes, nd)
	}
	n.mu.Unlock()
	for _, nd := range nodes {
		nd.Close()
	}
	n.mu.Lock()
	n.closed = true
	for _, l := range n.peers {
		l.cancel()
	}
	broken := n.takeLinks(func(*link) bool { return true })
	n.mu.Unlock()
	breakLinks(broken)
	n.handlers.Wait()
}

// SetPushPull makes the Nodes alive to each other exchange their state
// every period, as memberlist's anti-entropy does; 0 stops it, leaving
// the exchanges on Join, Heal and Up.
func (n *Network) SetPushPull(every time.Duration) {
	n.mu.Lock()
	stop := n.stopPushPull
	n.stopPushPull = nil
	if every > 0 && !n.closed {
		n.stopPushPull = make(chan struct{})
		n.loops.Add(1)
		go n.pushPullLoop(every, n.stopPushPull)
	}
	n.mu.Unlock()
	if stop != nil {
		close(stop)
	}
}

func (n *Network) pushPullLoop(every time.Duration, stop <-chan struct{}) {
	defer n.loops.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			n.pushPullRound()
		case <-stop:
			return
		}
	}
}

// takeLinks removes and returns the links that match. n.mu must be held.
func (n *Network) takeLinks(match func(*link) bool) []*link {
	var out []*link
	for lk := range n.links {
		if match(lk) {
			out = append(out, lk)
			delete(n.links, lk)
		}
	}
	return out
}

// breakLinks is called without n.mu: breaking wakes blocked readers and
// writers, whose close callbacks take n.mu.
func breakLinks(links []*link) {
	for _, lk := range links {
		breakStream(lk.dialEnd)
	}
}
