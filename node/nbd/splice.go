package nbd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Large writes are spliced: the payload goes from the client's socket into
// a pipe (the kernel moves page references, no copy) and, once it is all
// there, from the pipe into the export's file (one copy, into the page
// cache). Read into a buffer and written out again, every byte would be
// copied twice; on a sequential write that second copy was a third of the
// server's CPU. The whole payload is in the pipe before any of it is
// written, so a client that vanishes mid-payload still changes nothing.
const (
	// spliceMin is the smallest payload worth a pipe's two system calls.
	spliceMin = 128 << 10
	// maxPipes bounds one connection's pipes: spliced writes in flight.
	// Only FUA writes are held in pipes for workers (a plain spliced
	// write is applied on the reader, with one pipe): with two, a client
	// at iodepth 16 found the reader waiting for a pipe whenever two
	// writes waited on the file, and its own data backed up in the
	// socket; a pipe holds page references, not copies, so more cost
	// little memory.
	maxPipes = 8
	// pipeSize is the capacity asked for; without CAP_SYS_RESOURCE the
	// kernel allows up to /proc/sys/fs/pipe-max-size (1 MiB by default),
	// and a pipe gets the most it can.
	pipeSize = 4 << 20
)

// errPipeFull means the pipe ran out of slots before the payload was all
// in: each slot holds a page or less, and a socket's buffers may be
// fragments of pages.
var errPipeFull = errors.New("pipe full")

// pipe is a kernel pipe holding one write's payload, or part of it.
type pipe struct {
	r, w int // file descriptors, non-blocking
	cap  int // capacity in bytes
	n    int // bytes in the pipe
}

func newPipe() (*pipe, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, fmt.Errorf("pipe: %w", err)
	}
	p := &pipe{r: fds[0], w: fds[1]}
	for size := pipeSize; size >= spliceMin; size /= 2 {
		if got, err := unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, size); err == nil {
			p.cap = got
			return p, nil
		}
	}
	p.close()
	return nil, fmt.Errorf("pipe: cannot grow to %d bytes", spliceMin)
}

func (p *pipe) close() {
	unix.Close(p.r)
	unix.Close(p.w)
}

// fill splices n bytes from the connection into the pipe. It returns
// errPipeFull when the pipe can take no more while the socket has data;
// the bytes already in the pipe stay there (p.n says how many).
func (p *pipe) fill(rc syscall.RawConn, n int) error {
	var ferr error
	stalls := 0
	err := rc.Read(func(fd uintptr) bool {
		for p.n < n {
			m, err := unix.Splice(int(fd), nil, p.w, nil, n-p.n, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			switch {
			case m > 0:
				p.n += int(m)
				stalls = 0
			case err == nil:
				ferr = io.ErrUnexpectedEOF // the client closed mid-payload
				return true
			case errors.Is(err, unix.EINTR):
			case errors.Is(err, unix.EAGAIN):
				// Nothing to read (wait for the socket), or no room in
				// the pipe: the socket's queue tells which. Data arriving
				// in between looks like the second, so only a stall that
				// repeats counts.
				queued, qerr := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
				if qerr != nil || queued == 0 {
					return false
				}
				if stalls++; stalls >= 3 {
					ferr = errPipeFull
					return true
				}
			default:
				ferr = err
				return true
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("splice from socket: %w", err)
	}
	if ferr != nil && !errors.Is(ferr, errPipeFull) {
		return fmt.Errorf("splice from socket: %w", ferr)
	}
	return ferr
}

// drainTo splices everything in the pipe into f at off.
func (p *pipe) drainTo(f *os.File, off int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		for p.n > 0 {
			m, err := unix.Splice(p.r, nil, int(fd), &off, p.n, unix.SPLICE_F_MOVE)
			switch {
			case m > 0:
				p.n -= int(m)
			case errors.Is(err, unix.EINTR):
			case err != nil:
				serr = err
				return
			default:
				serr = io.ErrShortWrite
				return
			}
		}
	})
	return errors.Join(err, serr)
}

// readInto moves the pipe's bytes into b, which holds at least p.n.
func (p *pipe) readInto(b []byte) error {
	for done := 0; p.n > 0; {
		m, err := unix.Read(p.r, b[done:done+p.n])
		switch {
		case m > 0:
			done += m
			p.n -= m
		case errors.Is(err, unix.EINTR):
		case err != nil:
			return fmt.Errorf("read pipe: %w", err)
		default:
			return fmt.Errorf("read pipe: %w", io.ErrUnexpectedEOF)
		}
	}
	return nil
}

// discard empties the pipe, after a write that did not consume it.
func (p *pipe) discard() error {
	buf := getBuf(p.n)
	defer putBuf(buf)
	return p.readInto(*buf)
}

// readSpliced reads a write's payload: what the reader holds already into
// a buffer, the rest into a pipe. If the pipe fills up first, the payload
// is read into a buffer after all.
func (t *transmission) readSpliced(br *bufio.Reader, req request) (job, error) {
	n := int(req.Length)
	j := job{req: req}
	if k := min(br.Buffered(), n); k > 0 {
		j.prefix = getBuf(k)
		if _, err := io.ReadFull(br, *j.prefix); err != nil {
			putBuf(j.prefix)
			return job{}, fmt.Errorf("read write payload: %w", err)
		}
	}
	k := len(j.prefixBytes())
	p, err := t.getPipe()
	if err == nil {
		err = p.fill(t.raw, n-k)
		if err == nil {
			j.pipe = p
			t.spliced = true
			return j, nil
		}
		if !errors.Is(err, errPipeFull) {
			j.release()
			t.putPipe(p)
			return job{}, fmt.Errorf("read write payload: %w", err)
		}
	} else {
		t.log.Debug("nbd: no pipe for a large write, copying it", "err", err)
	}
	// Copy what arrived so far out of the way and read the rest.
	j.buf = getBuf(n)
	copy(*j.buf, j.prefixBytes())
	done, rerr := k, error(nil)
	if p != nil {
		done += p.n
		rerr = p.readInto((*j.buf)[k:])
		t.putPipe(p)
	}
	if rerr == nil {
		_, rerr = io.ReadFull(br, (*j.buf)[done:])
	}
	if j.prefix != nil {
		putBuf(j.prefix)
		j.prefix = nil
	}
	if rerr != nil {
		j.release()
		return job{}, fmt.Errorf("read write payload: %w", rerr)
	}
	return j, nil
}

// pipeCap is the payload a pipe takes: that of the first pipe made, or
// the most any could have before one is.
func (t *transmission) pipeCap() int {
	if t.npipes == 0 {
		return pipeSize
	}
	return t.pipeCapacity
}

// getPipe returns an idle pipe, making one while fewer than maxPipes
// exist, else waiting for a worker to finish with one.
func (t *transmission) getPipe() (*pipe, error) {
	select {
	case p := <-t.pipes:
		return t.usable(p)
	default:
	}
	if t.npipes < maxPipes {
		p, err := newPipe()
		if err != nil {
			t.raw = nil // no pipes here: copy from now on
			return nil, err
		}
		t.npipes++
		t.pipeCapacity = p.cap
		return p, nil
	}
	return t.usable(<-t.pipes)
}

// usable replaces a pipe a worker could not empty.
func (t *transmission) usable(p *pipe) (*pipe, error) {
	if p.n == 0 {
		return p, nil
	}
	p.close()
	q, err := newPipe()
	if err != nil {
		t.npipes--
		return nil, err
	}
	return q, nil
}

// putPipe gives a pipe back, emptied if it can be.
func (t *transmission) putPipe(p *pipe) {
	if p.n > 0 {
		p.discard()
	}
	t.pipes <- p
}

// closePipes closes every pipe; the workers are done with them.
func (t *transmission) closePipes() {
	for range t.npipes {
		(<-t.pipes).close()
	}
}

// spliceConn returns the connection's file descriptor access when payloads
// can be spliced from it: a plain TCP or unix socket, not TLS.
func spliceConn(c net.Conn) syscall.RawConn {
	switch c := c.(type) {
	case *net.TCPConn:
		if rc, err := c.SyscallConn(); err == nil {
			return rc
		}
	case *net.UnixConn:
		if rc, err := c.SyscallConn(); err == nil {
			return rc
		}
	}
	return nil
}

// fillLimiter caps the next read from the connection. After a spliced
// write the reader asks for the next request header alone: a full buffer's
// read would pull the start of the next payload through user memory.
type fillLimiter struct {
	r     io.Reader
	limit int // 0: no cap
}

func (l *fillLimiter) Read(p []byte) (int, error) {
	if l.limit > 0 && len(p) > l.limit {
		p = p[:l.limit]
	}
	return l.r.Read(p)
}
