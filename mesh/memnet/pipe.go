package memnet

import (
	"bytes"
	"errors"
	"io"
	"sync"
)

// ErrLinkDown is what reads and writes on a stream return after the
// network cut it: the link was partitioned or a peer went down.
var ErrLinkDown = errors.New("memnet: link down")

// pipeCapacity bounds the bytes buffered in one direction of a stream.
// Buffering lets a writer run ahead of its reader (net.Pipe hands over
// every write synchronously, which costs a goroutine switch per write);
// the bound gives backpressure.
const pipeCapacity = 1 << 20

// halfPipe is one direction of a stream: bytes written at one end wait here
// to be read at the other.
type halfPipe struct {
	mu     sync.Mutex
	cond   sync.Cond // signalled on every change of buf, eof or err
	buf    bytes.Buffer
	eof    bool  // the writer closed: reads drain buf, then return io.EOF
	err    error // broken: reads and writes fail with err at once
	closed bool  // the reader closed: writes fail with io.ErrClosedPipe
}

func newHalfPipe() *halfPipe {
	h := &halfPipe{}
	h.cond.L = &h.mu
	return h
}

func (h *halfPipe) Read(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for h.buf.Len() == 0 && !h.eof && h.err == nil && !h.closed {
		h.cond.Wait()
	}
	switch {
	case h.err != nil:
		return 0, h.err
	case h.closed:
		return 0, io.ErrClosedPipe
	case h.buf.Len() > 0:
		n, _ := h.buf.Read(p)
		h.cond.Broadcast()
		return n, nil
	default:
		return 0, io.EOF
	}
}

func (h *halfPipe) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	written := 0
	for len(p) > 0 {
		for h.buf.Len() >= pipeCapacity && h.err == nil && !h.closed && !h.eof {
			h.cond.Wait()
		}
		switch {
		case h.err != nil:
			return written, h.err
		case h.closed, h.eof:
			return written, io.ErrClosedPipe
		}
		n := min(len(p), pipeCapacity-h.buf.Len())
		h.buf.Write(p[:n])
		p = p[n:]
		written += n
		h.cond.Broadcast()
	}
	return written, nil
}

// closeWrite marks the end of the data: the reader gets io.EOF after it.
func (h *halfPipe) closeWrite() {
	h.mu.Lock()
	h.eof = true
	h.cond.Broadcast()
	h.mu.Unlock()
}

// closeRead drops unread data: the writer fails from now on.
func (h *halfPipe) closeRead() {
	h.mu.Lock()
	h.closed = true
	h.buf = bytes.Buffer{}
	h.cond.Broadcast()
	h.mu.Unlock()
}

// breakWith fails both sides of h with err.
func (h *halfPipe) breakWith(err error) {
	h.mu.Lock()
	if h.err == nil {
		h.err = err
	}
	h.buf = bytes.Buffer{}
	h.cond.Broadcast()
	h.mu.Unlock()
}

// end is one end of a stream: it reads from in and writes to out.
type end struct {
	in, out   *halfPipe
	closeOnce sync.Once
	onClose   func()
}

func (e *end) Read(p []byte) (int, error)  { return e.in.Read(p) }
func (e *end) Write(p []byte) (int, error) { return e.out.Write(p) }

// Close ends the stream from this side: the other end reads what was sent,
// then io.EOF, and its writes fail. Close is idempotent.
func (e *end) Close() error {
	e.closeOnce.Do(func() {
		e.out.closeWrite()
		e.in.closeRead()
		e.onClose()
	})
	return nil
}

// newStream returns the two ends of a stream. onClose runs once each end
// is closed, for the network's bookkeeping.
func newStream(onClose func(*end)) (a, b *end) {
	ab, ba := newHalfPipe(), newHalfPipe()
	a = &end{in: ba, out: ab}
	b = &end{in: ab, out: ba}
	a.onClose = func() { onClose(a) }
	b.onClose = func() { onClose(b) }
	return a, b
}

// breakStream fails both directions of the stream with ErrLinkDown.
func breakStream(e *end) {
	e.in.breakWith(ErrLinkDown)
	e.out.breakWith(ErrLinkDown)
}

// ErrReset is what reads and writes on a stream return after one end
// reset it (meshnet.Abort).
var ErrReset = errors.New("memnet: stream reset")

// Reset breaks the stream: both ends' reads and writes fail with ErrReset
// from now on, so the peer does not mistake it for a finished exchange.
func (e *end) Reset() error {
	e.in.breakWith(ErrReset)
	e.out.breakWith(ErrReset)
	return e.Close()
}
