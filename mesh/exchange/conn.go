package exchange

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// initialFrameBuffer is what a frame buffer starts at; larger frames grow
// it as their bytes arrive.
const initialFrameBuffer = 1 << 20

// errFrameTooLarge means a frame header announced more than MaxFrameSize.
var errFrameTooLarge = errors.New("frame exceeds the size limit")

// conn frames messages on one stream. It is used by one goroutine at a
// time; the buffers are reused from one round trip to the next, which
// matters when every frame is megabytes.
type conn struct {
	rw   io.ReadWriteCloser
	r    *bufio.Reader
	w    *bufio.Writer
	rbuf bytes.Buffer // the body of the last frame read
	wbuf bytes.Buffer // the body of the frame being written
}

func newConn(rw io.ReadWriteCloser) *conn {
	return &conn{rw: rw, r: bufio.NewReaderSize(rw, 64<<10), w: bufio.NewWriterSize(rw, 64<<10)}
}

// readFrame reads one frame and returns its body, valid until the next
// readFrame. The body is bounded by MaxFrameSize, and the buffer is sized
// for it only once the first megabyte arrived, so a peer that announces a
// large frame and sends nothing does not make us allocate it.
func (c *conn) readFrame() ([]byte, error) {
	return readFrame(c.r, &c.rbuf)
}

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

// writeFrame writes wbuf as one frame and flushes it.
func (c *conn) writeFrame() error {
	if c.wbuf.Len() > MaxFrameSize {
		return fmt.Errorf("write frame of %d bytes: %w (%d)", c.wbuf.Len(), errFrameTooLarge, MaxFrameSize)
	}
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(c.wbuf.Len()))
	if _, err := c.w.Write(hdr[:n]); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	if _, err := c.w.Write(c.wbuf.Bytes()); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	return nil
}

// release drops frame buffers grown past initialFrameBuffer, so that idle
// streams do not pin megabytes each.
func (c *conn) release() {
	if c.rbuf.Cap() > initialFrameBuffer {
		c.rbuf = bytes.Buffer{}
	}
	if c.wbuf.Cap() > initialFrameBuffer {
		c.wbuf = bytes.Buffer{}
	}
}

func (c *conn) close() error {
	return c.rw.Close()
}
