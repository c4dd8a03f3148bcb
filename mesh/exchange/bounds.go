package exchange

import (
	"errors"
	"time"
)

// What one peer may make a server hold. Every stream is served one round
// trip at a time, but a peer may open many streams (as many as the host
// lets it: libp2p's resource manager in the daemon), so these bound what
// the streams of one peer take together, and how long a stream that does
// not keep up may hold anything.
const (
	// MaxServedPerPeer bounds the round trips served to one peer at once.
	// Each holds at most a request frame (MaxFrameSize), a block slab
	// (MaxGetPayload plus a block) and a reply frame (MaxFrameSize), so a
	// peer makes the server hold at most MaxServedPerPeer times 54 MiB of
	// frames, however many streams it opens; a frame's buffer is made only
	// once its round trip has its turn. A stream whose request waits for
	// a turn holds its 128 KiB of stream buffers and nothing more. 16
	// round trips of 16 MiB in flight fill any link a peer has.
	MaxServedPerPeer = 16
	// IdleTimeout is how long a stream may sit between requests (a
	// client's pooled stream) before the server closes it. The client
	// finds a stream closed while pooled on its next use and retries on
	// a fresh one.
	IdleTimeout = 2 * time.Minute
)

// requestFloorRate is the slowest a peer may send a request once its frame
// header arrived (replyFloorRate for the other way): a peer that trickles
// a frame, one byte a second, holds a stream and a turn only until then.
const requestFloorRate = replyFloorRate

// requestReadBound is how long reading the body of a request of n bytes
// may take once it has its turn.
func requestReadBound(n uint64) time.Duration {
	return 30*time.Second + time.Duration(n)*time.Second/requestFloorRate
}

// errIdle means a stream sat without a request past IdleTimeout; errTooSlow
// that a peer trickled a request below requestFloorRate.
var (
	errIdle    = errors.New("stream idle: closed")
	errTooSlow = errors.New("peer too slow: stream reset")
)

// deadline aborts a stream served when a step (waiting for a request,
// reading one) outlasts its bound.
type deadline struct {
	timer   *time.Timer
	stopped bool // stop was called; inTime is what it said
	inTime  bool
}

func abortAfter(c *conn, d time.Duration) *deadline {
	return &deadline{timer: time.AfterFunc(d, func() { c.abort() })}
}

// stop ends the step; false means the bound passed and the stream is
// aborted. Calls after the first say the same; only the goroutine that
// runs the step calls it.
func (dl *deadline) stop() bool {
	if !dl.stopped {
		dl.stopped, dl.inTime = true, dl.timer.Stop()
	}
	return dl.inTime
}
