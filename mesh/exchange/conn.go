package exchange

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// initialFrameBuffer is what a frame buffer starts at; larger frames grow
// it as their bytes arrive.
const initialFrameBuffer = 1 << 20

// errFrameTooLarge means a frame header announced more than MaxFrameSize.
var errFrameTooLarge = errors.New("frame exceeds the size limit")

// framePool holds frame buffers between round trips. Bulk transfers move
// frames of up to 16 MiB; growing a fresh buffer for each cost the puller
// a quarter of its CPU in clearing and copying.
var framePool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// slabPool holds the buffers the server reads a response's blocks into.
var slabPool = sync.Pool{New: func() any { return new([]byte) }}

// conn frames messages on one stream. It is used by one goroutine at a
// time. Its frame buffers come from framePool for a round trip and go back
// on release, so idle streams hold none.
type conn struct {
	rw   io.ReadWriteCloser
	r    *bufio.Reader
	w    *bufio.Writer
	rbuf *bytes.Buffer // the body of the last frame read, if pooled
	wbuf *bytes.Buffer // the body of the frame being written
	slab *[]byte       // the blocks of the response being sent
}

func newConn(rw io.ReadWriteCloser) *conn {
	return &conn{rw: rw, r: bufio.NewReaderSize(rw, 64<<10), w: bufio.NewWriterSize(rw, 64<<10)}
}

// readFrame reads one frame into a pooled buffer and returns its body,
// valid until the next readFrame or release: only for messages whose
// decoded contents are done with by then.
func (c *conn) readFrame() ([]byte, error) {
	if c.rbuf == nil {
		c.rbuf = framePool.Get().(*bytes.Buffer)
	}
	return readFrame(c.r, c.rbuf)
}

// readOwnedFrame reads one frame into a buffer of its own, which the
// caller keeps: decoded blocks share its bytes rather than copy them.
func (c *conn) readOwnedFrame() ([]byte, error) {
	return readFrame(c.r, new(bytes.Buffer))
}

// writeBuffer returns the buffer for the body of the next frame, empty.
func (c *conn) writeBuffer() *bytes.Buffer {
	if c.wbuf == nil {
		c.wbuf = framePool.Get().(*bytes.Buffer)
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
		c.slab = slabPool.Get().(*[]byte)
	}
	if cap(*c.slab) < slabBytes {
		*c.slab = make([]byte, 0, slabBytes)
	}
	return (*c.slab)[:0]
}

func (c *conn) keepSlab(b []byte) { *c.slab = b[:0] }

// readFrame reads one frame into buf and returns its body. The body is
// bounded by MaxFrameSize, and buf is sized for it only once the first
// megabyte arrived, so a peer that announces a large frame and sends
// nothing does not make us allocate it.
//
// readFrame returns io.EOF, unwrapped, only when the stream ends cleanly
// between frames.
func readFrame(r *bufio.Reader, buf *bytes.Buffer) ([]byte, error) {
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
	// Read the first initialFrameBuffer bytes before sizing the buffer for
	// the whole frame: a peer must send 1 MiB to make us hold 17.
	buf.Reset()
	first := min(n, initialFrameBuffer)
	buf.Grow(int(first))
	got, err := io.CopyN(buf, r, int64(first))
	if err == nil && n > first {
		buf.Grow(int(n - first))
		var more int64
		more, err = io.CopyN(buf, r, int64(n-first))
		got += more
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read frame body (%d of %d bytes): %w", got, n, err)
	}
	return buf.Bytes(), nil
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
func (c *conn) release() {
	for _, b := range []**bytes.Buffer{&c.rbuf, &c.wbuf} {
		if *b != nil {
			(*b).Reset()
			framePool.Put(*b)
			*b = nil
		}
	}
	if c.slab != nil {
		slabPool.Put(c.slab)
		c.slab = nil
	}
}

func (c *conn) close() error {
	return c.rw.Close()
}
