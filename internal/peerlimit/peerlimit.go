// Package peerlimit bounds what each peer may have a node do at once: a
// protocol's server takes a turn of the peer's before it reads or holds
// anything much of a request, so that however many streams a peer opens
// (up to the host's stream limits), only Limit of them cost more than a
// waiting goroutine.
package peerlimit

import (
	"context"
	"errors"
	"sync"
)

// ErrStopped is what Take returns when its stop channel closed first.
var ErrStopped = errors.New("gave up waiting for a turn")

// Turns hands out up to Limit turns per peer at once. Limit must be set
// above 0 before the first Take and not change: Take and TryTake panic
// otherwise, rather than wait forever. Safe for concurrent use.
type Turns struct {
	Limit int

	mu    sync.Mutex
	peers map[string]*peer
}

type peer struct {
	free  chan struct{} // a token per turn held
	users int           // callers holding or waiting for a turn
}

// join counts a caller of p's in and returns p's turns.
func (t *Turns) join(p string) *peer {
	if t.Limit <= 0 {
		panic("peerlimit: Turns used with no Limit")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.peers == nil {
		t.peers = make(map[string]*peer)
	}
	pt := t.peers[p]
	if pt == nil {
		pt = &peer{free: make(chan struct{}, t.Limit)}
		t.peers[p] = pt
	}
	pt.users++
	return pt
}

// leave counts a caller of p's out.
func (t *Turns) leave(p string, pt *peer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if pt.users--; pt.users == 0 {
		delete(t.peers, p)
	}
}

// Take waits for a turn of p's until ctx ends (ctx.Err()) or stop closes
// (ErrStopped); stop may be nil. The returned function gives the turn
// back and must be called exactly once after a nil error.
func (t *Turns) Take(ctx context.Context, stop <-chan struct{}, p string) (func(), error) {
	pt := t.join(p)
	select {
	case pt.free <- struct{}{}:
		return func() { <-pt.free; t.leave(p, pt) }, nil
	case <-ctx.Done():
		t.leave(p, pt)
		return nil, ctx.Err()
	case <-stop:
		t.leave(p, pt)
		return nil, ErrStopped
	}
}

// TryTake takes a turn of p's if one is free now; ok false means none
// was. The returned function must be called exactly once after ok.
func (t *Turns) TryTake(p string) (release func(), ok bool) {
	pt := t.join(p)
	select {
	case pt.free <- struct{}{}:
		return func() { <-pt.free; t.leave(p, pt) }, true
	default:
		t.leave(p, pt)
		return nil, false
	}
}

// Load reports the callers of p's holding or waiting for a turn, and the
// turns held.
func (t *Turns) Load(p string) (callers, held int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if pt := t.peers[p]; pt != nil {
		return pt.users, len(pt.free)
	}
	return 0, 0
}
