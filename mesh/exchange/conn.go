package exchange

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/weft-mesh/weft/mesh/meshnet"
)

// initialFrameBuffer is what a frame buffer starts at; larger frames grow
// it as their bytes arrive.
const initialFrameBuffer = 1 << 20

// errFrameTooLarge means a frame header announced more than MaxFrameSize.
var errFrameTooLarge = errors.New("frame exceeds the size limit")

// idleBuffers bounds the idle buffers each pool keeps: enough for the
// requests in flight of a few bulk transfers at once. A frame buffer grows
// to the largest frame it carried (at most MaxFrameSize), so the pools
// hold at most a few hundred MiB, and usually a few dozen.
const idleBuffers = 8

// framePool holds frame buffers between round trips. Bulk transfers move
// frames of up to 16 MiB; growing a fresh buffer for each cost the puller
// a quarter of its CPU in clearing and copying. It is a free list rather
// than a sync.Pool, which every other garbage collection empties: during
// a bulk transfer that is every few hundred MiB, and each emptying cost
// fresh buffers for every stream.
var framePool = freeList[bytes.Buffer]{free: make(chan *bytes.Buffer, idleBuffers)}

// slabPool holds the buffers the server reads a response's blocks into.
var slabPool = freeList[[]byte]{free: make(chan *[]byte, idleBuffers)}

// freeList keeps up to cap(free) idle buffers; safe for concurrent use.
type freeList[T any] struct{ free chan *T }

// get returns an idle buffer, or a new zero one.
func (l freeList[T]) get() *T {
	select {
	case b := <-l.free:
		return b
	default:
		return new(T)
	}
}

// put keeps b for a later get, or drops it if enough are idle.
func (l freeList[T]) put(b *T) {
	select {
	case l.free <- b:
	default:
	}
}

// conn frames messages on one stream. It is used by one goroutine at a
// time. Its frame buffers come from framePool for a round trip, taken once
// a frame's header arrived, and go back on release, so idle streams and
// streams waiting for a frame's header hold none.
type conn struct {
	// sized, if set, is told a frame's length once its header is read and
	// before any room is made for the body; its error fails the read.
	sized func(n uint64) error
	// got counts the bytes read from rw, for the server's stall watch.
	got atomic.Int64

	rw   io.ReadWriteCloser
	r    *bufio.Reader
	w    *bufio.Writer
	rbuf *bytes.Buffer // the body of the last frame read, if pooled
	wbuf *bytes.Buffer // the body of the frame being written
	slab *[]byte       // the blocks of the response being sent
}

func newConn(rw io.ReadWriteCloser) *conn {
	c := &conn{rw: rw, w: bufio.NewWriterSize(rw, 64<<10)}
	c.r = bufio.NewReaderSize(countingReader{rw, &c.got}, 64<<10)
	return c
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (cr countingReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	cr.n.Add(int64(n))
	return n, err
}

// readFrame reads one frame into a pooled buffer and returns its body,
// valid until the next readFrame or release: only for messages whose
// decoded contents are done with by then.
func (c *conn) readFrame() ([]byte, error) {
	return readFrame(c.r, c.bufferFor(func() *bytes.Buffer {
		if c.rbuf == nil {
			c.rbuf = framePool.get()
		}
		return c.rbuf
	}))
}

// readOwnedFrame reads one frame into a buffer of its own, which the
// caller keeps: decoded blocks share its bytes rather than copy them.
func (c *conn) readOwnedFrame() ([]byte, error) {
	return readFrame(c.r, c.bufferFor(func() *bytes.Buffer { return new(bytes.Buffer) }))
}

// bufferFor returns what readFrame asks for a frame's buffer: c.sized's
// word on the frame's length, then a buffer from get.
func (c *conn) bufferFor(get func() *bytes.Buffer) func(n uint64) (*bytes.Buffer, error) {
	return func(n uint64) (*bytes.Buffer, error) {
		if c.sized != nil {
			if err := c.sized(n); err != nil {
				return nil, err
			}
		}
		return get(), nil
	}
}

// writeBuffer returns the buffer for the body of the next frame, empty.
func (c *conn) writeBuffer() *bytes.Buffer {
	if c.wbuf == nil {
		c.wbuf = framePool.get()
	}
	c.wbuf.Reset()
	return c.wbuf
}

// slabBytes is the room of a block slab.
const slabBytes = MaxGetPayload + maxBlockSize

// blockSlab returns an empty slice over a pooled buffer to read the blocks
// of a response into, with room for MaxGetPayload and one block more (a
// full response reads the block that no longer fits before it stops), so
// that reading them never grows it; keepSlab takes back what it grew into.
// Both are valid until release.
func (c *conn) blockSlab() []byte {
	if c.slab == nil {
		c.slab = slabPool.get()
	}
	if cap(*c.slab) < slabBytes {
		*c.slab = make([]byte, 0, slabBytes)
	}
	return (*c.slab)[:0]
}

func (c *conn) keepSlab(b []byte) { *c.slab = b[:0] }

// readFrame reads one frame into the buffer bufferFor gives it for the
// frame's length, once the header is read, and returns its body; an error
// from bufferFor is returned. The body is bounded by MaxFrameSize, and the
// buffer is sized for it only once the first megabyte arrived, so a peer
// that announces a large frame and sends nothing does not make us
// allocate it.
//
// readFrame returns io.EOF, unwrapped, only when the stream ends cleanly
// between frames.
func readFrame(r *bufio.Reader, bufferFor func(n uint64) (*bytes.Buffer, error)) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if errors.Is(err, io.EOF) {
		return nil, io.EOF
	}
	if err != nil {
		return nil, fmt.Errorf("read frame header: %w", err)
	}
	if n > MaxFrameSize {
		return nil, fmt.Errorf("frame of %d bytes: %w (%d)", n, errFrameTooLarge, MaxFrameSize)
	}
	buf, err := bufferFor(n)
	if err != nil {
		return nil, err
	}
	// Read the first initialFrameBuffer bytes before sizing the buffer for
	// the whole frame: a peer must send 1 MiB to make us hold 17. The body
	// is read into buf's spare room with ReadFull: bytes.Buffer.ReadFrom
	// grows a buffer that is exactly full, which doubled a pooled buffer
	// on every frame that filled it.
	buf.Reset()
	first := int(min(n, initialFrameBuffer))
	buf.Grow(first)
	body := buf.AvailableBuffer()[:first]
	got, err := io.ReadFull(r, body)
	if err == nil && n > uint64(first) {
		if uint64(cap(body)) < n {
			grown := make([]byte, n)
			copy(grown, body)
			*buf = *bytes.NewBuffer(grown[:0])
			body = grown
		}
		body = body[:n]
		var more int
		more, err = io.ReadFull(r, body[first:])
		got += more
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read frame body (%d of %d bytes): %w", got, n, err)
	}
	return body, nil
}

// writeFrame writes the body in the write buffer as one frame and
// flushes it.
func (c *conn) writeFrame() error {
	body := c.wbuf.Bytes()
	if len(body) > MaxFrameSize {
		return fmt.Errorf("write frame of %d bytes: %w (%d)", len(body), errFrameTooLarge, MaxFrameSize)
	}
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(body)))
	if _, err := c.w.Write(hdr[:n]); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	if _, err := c.w.Write(body); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	return nil
}

// release gives the frame buffers back to framePool once a round trip is
// over; what was read into them must not be used after.
// releaseRead puts the last frame read's buffer back in framePool.
func (c *conn) releaseRead() {
	if c.rbuf != nil {
		c.rbuf.Reset()
		framePool.put(c.rbuf)
		c.rbuf = nil
	}
}

func (c *conn) release() {
	for _, b := range []**bytes.Buffer{&c.rbuf, &c.wbuf} {
		if *b != nil {
			(*b).Reset()
			framePool.put(*b)
			*b = nil
		}
	}
	if c.slab != nil {
		slabPool.put(c.slab)
		c.slab = nil
	}
}

func (c *conn) close() error {
	return c.rw.Close()
}

// abort breaks the stream (meshnet.Abort), for an exchange given up
// midway: the peer's pending read or write fails at once rather than
// taking the cancel for a finished exchange or waiting on it.
func (c *conn) abort() error {
	return meshnet.Abort(c.rw)
}
