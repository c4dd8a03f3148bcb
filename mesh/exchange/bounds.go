package exchange

import (
	"errors"
	"sync"
	"time"

	"github.com/weft-mesh/weft/internal/peerlimit"
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
	// frames, however many streams it opens; a request's frame buffer is
	// taken only once its round trip has its turn. A stream whose request
	// waits for a turn holds its 128 KiB of stream buffers and nothing
	// more. 16 round trips of 16 MiB in flight fill any link a peer has.
	// The Client keeps at most this many round trips in flight to a
	// peer, so an honest client never waits at the server for a turn.
	MaxServedPerPeer = 16
	// IdleTimeout is how long a stream may sit between requests (a
	// client's pooled stream) before the server closes it. The client
	// finds a stream closed while pooled on its next use and retries on
	// a fresh one.
	IdleTimeout = 2 * time.Minute
	// DefaultFrameBudget bounds the frame bytes the servers of a process
	// (a node) hold for all peers at once, unless a Server has Frames of
	// its own: a holder of the mesh secret can be many peers, each with
	// its MaxServedPerPeer turns. A request's frame counts its announced
	// length from its header on; a Get's reply, a block slab and a reply
	// frame (34 MiB) from its decoding on.
	DefaultFrameBudget = 1 << 30
)

// defaultFrames is the budget of the Servers without Frames of their own.
var defaultFrames = sync.OnceValue(func() *peerlimit.Bytes { return peerlimit.NewBytes(DefaultFrameBudget) })

// getReplyBytes is what a Get's reply may hold: a block slab and a reply
// frame.
const getReplyBytes = slabBytes + MaxFrameSize

// A request whose body delivers fewer than requestMinProgress bytes in a
// requestStallWindow, once it has its turn, resets its stream: a peer
// that trickles a frame (one byte a second) holds a turn for one window.
// It is a floor on progress, not on speed: a Put on a slow link shared by
// many streams (200 at 1 Mbit/s) still delivers that much, however long
// the whole takes, so honest traffic is never reset for being slow.
const (
	requestStallWindow = 30 * time.Second
	requestMinProgress = 16 << 10
)

// errIdle means a stream sat without a request past IdleTimeout; errTooSlow
// that a peer stalled a request (requestMinProgress).
var (
	errIdle    = errors.New("stream idle: closed")
	errTooSlow = errors.New("peer stalled a request: stream reset")
)

// deadline aborts a stream served when a step (waiting for a request)
// outlasts its bound.
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

// stallWatch calls onStall (aborting the stream, or a notice) when a
// window passes in which fewer than requestMinProgress bytes arrived on a
// stream, and then watches no more.
type stallWatch struct {
	mu      sync.Mutex
	timer   *time.Timer
	last    int64 // the stream's bytes read at the last check
	stopped bool
	stalled bool
}

func watchStall(c *conn, window time.Duration, onStall func()) *stallWatch {
	w := &stallWatch{last: c.got.Load()}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timer = time.AfterFunc(window, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.stopped {
			return
		}
		now := c.got.Load()
		if now-w.last < requestMinProgress {
			w.stalled = true
			onStall()
			return
		}
		w.last = now
		w.timer.Reset(window)
	})
	return w
}

// stop ends the watch; false means the stream stalled and is aborted.
func (w *stallWatch) stop() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.timer.Stop()
	return !w.stalled
}
