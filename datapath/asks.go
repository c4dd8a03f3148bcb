package datapath

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/mesh/exchange"
)

// asks is what a swarm or crowd receiver has asked and of whom, and the
// lock that guards it with the rest of their state. A block in flight is
// asked of nobody else, and a hedge (stallNoticed) asks another for blocks
// still in flight to a stalled member: each flight records whom it is
// with, so that the stalled member's late answer does not end the new one.
type asks struct {
	mu       sync.Mutex
	inflight map[cid.Cid]string // asked and not answered yet: of whom ("": the origin)
	stalled  map[string]int     // requests to each member that stalled and are still out
	changed  chan struct{}      // closed and replaced on every change
}

func (a *asks) init() {
	a.inflight = make(map[cid.Cid]string)
	a.stalled = make(map[string]int)
	a.changed = make(chan struct{})
}

// claimLocked records batch as asked of from ("": the origin). a.mu must
// be held.
func (a *asks) claimLocked(batch []cid.Cid, from string) {
	for _, c := range batch {
		a.inflight[c] = from
	}
}

// askedLocked reports whether c is in flight. a.mu must be held.
func (a *asks) askedLocked(c cid.Cid) bool {
	_, ok := a.inflight[c]
	return ok
}

// releaseLocked ends the flight of the blocks of batch asked of from:
// those asked of another since stay in flight. a.mu must be held.
func (a *asks) releaseLocked(batch []cid.Cid, from string) {
	for _, c := range batch {
		if asked, ok := a.inflight[c]; ok && asked == from {
			delete(a.inflight, c)
		}
	}
}

// answeringLocked reports whether a request from here to m is in flight
// and has not stalled (a stalled one's blocks are released): m is then
// sending, however long its answer takes, and not silent. A member's
// share lands once an answer is whole, and to a site on a slow link,
// where the answers of seven members share the download, an answer takes
// seconds: bench-swarm.sh unequal8's quarter-rate site went 3 s without a
// block of some share now and then and took shares from the origin that
// were on their way. a.mu must be held.
func (a *asks) answeringLocked(m string) bool {
	for _, from := range a.inflight {
		if from == m {
			return true
		}
	}
	return false
}

// signalLocked tells the waiters of changed. a.mu must be held.
func (a *asks) signalLocked() {
	close(a.changed)
	a.changed = make(chan struct{})
}

// stallNoticed is told that a request of batch to m has brought less than
// 16 KiB for Thresholds.HedgeAfter: its blocks are released, to be asked of
// the others too, and until the request ends the others are asked for m's
// share beside their own (the swarm's and crowd's hedgeLocked). One TCP
// flow of an owner's uplink can stall for seconds (retransmission backoff
// behind a queue that drops, while its other flows go on: bench-swarm.sh
// saw site pairs go 3-4 s without a block), and the blocks in flight on it
// were asked of nobody else until it recovered, or, past Patience, the
// rest of the share came from the origin again; the other members got
// those blocks from the owner and can send them now. If m's answer comes
// after all, its copies are stored as any duplicate is.
func (a *asks) stallNoticed(m string, batch []cid.Cid) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.releaseLocked(batch, m)
	a.stalled[m]++
	a.signalLocked()
}

// stallEnded is told that a request to m that stalled has ended.
func (a *asks) stallEnded(m string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stalled[m]--
}

// askHedged is askMember, telling a when the answer stalls and when a
// stalled request ends (once per request, however many round trips).
func (f *fetcher) askHedged(ctx context.Context, m string, batch []cid.Cid, a *asks) (got map[cid.Cid][]byte, err, keepErr error) {
	var stalled atomic.Bool
	actx := exchange.WithStallNotice(ctx, f.thresholds.HedgeAfter, func() {
		if stalled.CompareAndSwap(false, true) {
			a.stallNoticed(m, batch)
		}
	})
	got, err, keepErr = f.askMember(actx, m, batch)
	if stalled.Load() {
		a.stallEnded(m)
	}
	return got, err, keepErr
}
