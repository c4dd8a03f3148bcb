package exchange

import (
	"context"
	"sync"
)

// foregroundKey marks a context whose calls go before bulk ones.
type foregroundKey struct{}

// Foreground returns a context whose calls take the next free round trip
// to a peer before any waiting bulk call: a read miss a VM waits on goes
// before a heal or transfer's batch.
func Foreground(ctx context.Context) context.Context {
	return context.WithValue(ctx, foregroundKey{}, true)
}

func isForeground(ctx context.Context) bool {
	fg, _ := ctx.Value(foregroundKey{}).(bool)
	return fg
}

// inFlight caps the round trips in flight to each peer at limit, so that
// an honest client never has requests waiting at the server for a turn
// (MaxServedPerPeer), where they would hold stream windows and wait in
// arrival order behind bulk; here they wait holding nothing, foreground
// calls first. The zero value is not ready: limit must be above 0. Safe
// for concurrent use.
type inFlight struct {
	limit int

	mu    sync.Mutex
	peers map[string]*peerTrips
}

type peerTrips struct {
	held    int
	waiting [2][]*waiter // foreground first, then bulk; each in arrival order
}

type waiter struct {
	ready   chan struct{} // closed when the round trip is handed over
	granted bool          // under inFlight.mu
}

// take waits for a round trip to peer until ctx ends and returns the
// function that gives it back, which must be called exactly once.
func (f *inFlight) take(ctx context.Context, peer string) (func(), error) {
	lane := 1
	if isForeground(ctx) {
		lane = 0
	}
	f.mu.Lock()
	if f.peers == nil {
		f.peers = make(map[string]*peerTrips)
	}
	pt := f.peers[peer]
	if pt == nil {
		pt = &peerTrips{}
		f.peers[peer] = pt
	}
	ahead := len(pt.waiting[0])
	if lane == 1 {
		ahead += len(pt.waiting[1])
	}
	if pt.held < f.limit && ahead == 0 {
		pt.held++
		f.mu.Unlock()
		return func() { f.give(peer, pt) }, nil
	}
	w := &waiter{ready: make(chan struct{})}
	pt.waiting[lane] = append(pt.waiting[lane], w)
	f.mu.Unlock()

	select {
	case <-w.ready:
		return func() { f.give(peer, pt) }, nil
	case <-ctx.Done():
		f.mu.Lock()
		defer f.mu.Unlock()
		if w.granted {
			// Handed over as ctx ended: pass it on.
			f.giveLocked(peer, pt)
		} else {
			q := pt.waiting[lane]
			for i, o := range q {
				if o == w {
					pt.waiting[lane] = append(q[:i:i], q[i+1:]...)
					break
				}
			}
			f.dropIfIdle(peer, pt)
		}
		return nil, ctx.Err()
	}
}

// give hands a round trip to peer back: to the first waiter, foreground
// first, else to the free ones.
func (f *inFlight) give(peer string, pt *peerTrips) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.giveLocked(peer, pt)
}

func (f *inFlight) giveLocked(peer string, pt *peerTrips) {
	for lane := range pt.waiting {
		if q := pt.waiting[lane]; len(q) > 0 {
			w := q[0]
			q[0] = nil
			pt.waiting[lane] = q[1:]
			w.granted = true
			close(w.ready)
			return
		}
	}
	pt.held--
	f.dropIfIdle(peer, pt)
}

func (f *inFlight) dropIfIdle(peer string, pt *peerTrips) {
	if pt.held == 0 && len(pt.waiting[0]) == 0 && len(pt.waiting[1]) == 0 {
		delete(f.peers, peer)
	}
}
