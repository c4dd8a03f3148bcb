package nbd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// readBufferSize is the connection's read buffer: large enough to take many
// small requests per system call; big write payloads bypass it.
const readBufferSize = 256 << 10

// transmission serves the requests of one connection. One goroutine (run)
// reads requests and serves small reads and writes and spliced writes
// itself; the others go to workers, at most MaxInFlight and
// MaxInFlightBytes of payload at once, and replies are written whole by
// a replyWriter, so they may go out of order, as the protocol allows.
type transmission struct {
	s    *Server
	sess *session
	exp  Export
	size uint64
	ro   bool
	log  *slog.Logger
	obs  Observer
	now  func() time.Time

	out *replyWriter
	wg  sync.WaitGroup
	// jobs feeds the workers; workers counts them (only run touches it).
	jobs    chan job
	workers int
	fl      *flight
	sr      SharedReader // the export's, if it serves reads without a copy

	// Splicing large writes (see splice.go): raw is the socket, nil when
	// payloads cannot be spliced (TLS, or the export has no file); pipes
	// holds the idle pipes of the npipes made so far (only run makes them).
	raw    syscall.RawConn
	fw     FileWriter
	pipes  chan *pipe
	npipes int
	// pipeCapacity is the capacity of the pipes made so far.
	pipeCapacity int
	lim          *fillLimiter
	spliced      bool // the last request was a spliced write
}

func newTransmission(s *Server, sess *session, log *slog.Logger) *transmission {
	t := &transmission{
		s:    s,
		sess: sess,
		exp:  sess.exp,
		size: uint64(sess.exp.Size()),
		ro:   sess.exp.ReadOnly(),
		log:  log,
		obs:  s.cfg.Observer,
		now:  s.cfg.Now,
		fl:   newFlight(s.cfg.MaxInFlight, s.cfg.MaxInFlightBytes),
		out:  newReplyWriter(sess.conn),
		jobs: make(chan job),
		lim:  &fillLimiter{r: sess.conn},
	}
	t.sr, _ = t.exp.(SharedReader)
	if fw, ok := t.exp.(FileWriter); ok && !t.ro {
		t.fw, t.raw = fw, spliceConn(sess.conn)
		t.pipes = make(chan *pipe, maxPipes)
	}
	return t
}

// run reads requests until the client disconnects (NBD_CMD_DISC or EOF),
// sends garbage, or the connection is closed, then waits for the requests
// in flight. A write whose payload did not arrive whole is never applied,
// so a client vanishing mid-write leaves the export as it was before that
// write.
func (t *transmission) run(ctx context.Context) error {
	defer t.closePipes()
	defer t.wg.Wait()
	defer close(t.jobs)
	br := bufio.NewReaderSize(t.lim, readBufferSize)
	hdr := make([]byte, requestLen)
	var batch inlineBatch
	defer batch.release()
	for {
		// Before waiting for more requests, send the replies of the small
		// reads served inline so far, in one writev.
		if br.Buffered() < requestLen {
			if err := batch.flush(t.out); err != nil {
				return fmt.Errorf("send replies: %w", err)
			}
		}
		if t.spliced {
			t.lim.limit = requestLen
		}
		_, err := io.ReadFull(br, hdr)
		t.lim.limit, t.spliced = 0, false
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read request: %w", err)
		}
		req, err := decodeRequest(hdr)
		if err != nil {
			return err
		}
		if req.Type == cmdDisc {
			return batch.flush(t.out)
		}
		if t.inline(req) {
			buf := getBuf(int(req.Length))
			if req.Type == cmdWrite {
				if _, err := io.ReadFull(br, *buf); err != nil {
					putBuf(buf)
					return fmt.Errorf("read write payload: %w", err)
				}
			}
			errno, data := t.execute(ctx, job{req: req, buf: buf})
			batch.add(req.Cookie, errno, data, buf)
			if len(batch.bufs) >= inlineBatchMax {
				if err := batch.flush(t.out); err != nil {
					return fmt.Errorf("send replies: %w", err)
				}
			}
			continue
		}
		if err := t.dispatch(ctx, br, req); err != nil {
			return err
		}
	}
}

// Small reads and writes are served on the connection's reader goroutine
// and their replies sent together once the requests already received run
// out: a client with 16 requests in flight then costs one read and one
// writev system call per batch instead of one writev per reply, and no
// hand-off between goroutines. They are served from the head's cache or
// into the page cache in microseconds; on workers, 16 small writes to the
// one overlay file spent their time queueing for its inode lock and
// handing off (random 4 KiB writes at iodepth 16 ran at 0.75 of nbdkit's).
// Anything larger, and writes that ask for a flush (FUA), go to the
// workers.
const (
	inlineMax      = 64 << 10
	inlineBatchMax = 128 // iovecs, well under IOV_MAX
)

// inline reports whether req is served on the reader goroutine.
func (t *transmission) inline(req request) bool {
	switch {
	case req.Length > inlineMax:
		return false
	case req.Type == cmdRead:
	case req.Type == cmdWrite && req.Flags&cmdFlagFUA == 0:
	default:
		return false
	}
	return t.check(req) == errnoOK
}

// inlineBatch holds the replies of inline reads until they are sent.
type inlineBatch struct {
	bufs net.Buffers
	held []*[]byte
}

func (b *inlineBatch) add(cookie uint64, errno uint32, data readData, buf *[]byte) {
	hdr := make([]byte, simpleReplyLen)
	putSimpleReply(hdr, errno, cookie)
	b.bufs = append(b.bufs, hdr)
	if errno == errnoOK {
		b.bufs = data.appendTo(b.bufs)
	}
	b.held = append(b.held, buf)
}

func (b *inlineBatch) flush(out *replyWriter) error {
	if len(b.bufs) == 0 {
		return nil
	}
	err := out.send(b.bufs...)
	b.release()
	return err
}

// release returns the read buffers to the pool; their replies are sent or
// will never be.
func (b *inlineBatch) release() {
	for _, buf := range b.held {
		putBuf(buf)
	}
	b.bufs, b.held = b.bufs[:0], b.held[:0]
}

// dispatch checks one request and starts serving it. It returns an error
// only when the connection cannot go on.
func (t *transmission) dispatch(ctx context.Context, br *bufio.Reader, req request) error {
	payload := 0
	if req.Type == cmdWrite {
		payload = int(req.Length)
	}
	if errno := t.check(req); errno != errnoOK {
		// Skip a refused write's payload to stay in step with the client.
		// It is read into no buffer, so a huge length costs only time.
		if payload > 0 {
			if _, err := io.CopyN(io.Discard, br, int64(payload)); err != nil {
				return fmt.Errorf("skip refused write payload: %w", err)
			}
		}
		t.observeRefused(req, errno)
		return t.reply(req.Cookie, errno, readData{})
	}
	n := 0
	if req.Type == cmdRead || req.Type == cmdWrite {
		n = int(req.Length)
	}
	t.fl.acquire(n)
	if payload >= spliceMin && t.raw != nil && payload-br.Buffered() <= t.pipeCap() {
		j, err := t.readSpliced(br, req)
		if err != nil {
			t.fl.release(n)
			return err
		}
		j.n = n
		// A spliced write is applied here, on the reader, rather than
		// handed to a worker: its payload is in the pipe already, and its
		// one copy into the page cache costs about what the hand-off to
		// another thread did (sequential 1 MiB writes, README "NBD").
		// A FUA write waits for a flush, so it goes to a worker, as do
		// writes that are not spliced (TLS, or larger than a pipe).
		if req.Flags&cmdFlagFUA == 0 {
			t.work(ctx, j)
		} else {
			t.start(ctx, j)
		}
		return nil
	}
	var buf *[]byte
	if n > 0 {
		buf = getBuf(n)
	}
	if payload > 0 {
		if _, err := io.ReadFull(br, *buf); err != nil {
			putBuf(buf)
			t.fl.release(n)
			return fmt.Errorf("read write payload: %w", err)
		}
	}
	t.start(ctx, job{req: req, buf: buf, n: n})
	return nil
}

// job is one admitted request on its way to a worker. A spliced write's
// payload is prefix (what the reader had buffered) followed by the pipe's
// bytes; any other payload is in buf.
type job struct {
	req    request
	buf    *[]byte
	n      int
	prefix *[]byte
	pipe   *pipe
}

// prefixBytes returns the payload bytes the reader had buffered.
func (j *job) prefixBytes() []byte {
	if j.prefix == nil {
		return nil
	}
	return *j.prefix
}

// release returns the job's buffers and pipe, once it is served.
func (j *job) release() {
	if j.buf != nil {
		putBuf(j.buf)
	}
	if j.prefix != nil {
		putBuf(j.prefix)
	}
}

// start hands j to an idle worker, or starts a new one while fewer than
// MaxInFlight run. Workers live as long as the connection: a goroutine per
// request would pay for growing a fresh stack every time, which profiling
// showed as a tenth of the CPU of small reads.
func (t *transmission) start(ctx context.Context, j job) {
	select {
	case t.jobs <- j:
		return
	default:
	}
	if t.workers < t.s.cfg.MaxInFlight {
		t.workers++
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.work(ctx, j)
			for j := range t.jobs {
				t.work(ctx, j)
			}
		}()
		return
	}
	t.jobs <- j // admission (t.fl) bounds the jobs to the workers there are
}

func (t *transmission) work(ctx context.Context, j job) {
	defer t.fl.release(j.n)
	defer j.release()
	if j.pipe != nil {
		defer t.putPipe(j.pipe)
	}
	errno, data := t.execute(ctx, j)
	t.replyLog(j.req, errno, data)
}

// check validates a request before anything is allocated for it.
func (t *transmission) check(req request) uint32 {
	allowed := cmdFlagFUA
	if req.Type == cmdWriteZeroes {
		allowed |= cmdFlagNoHole
	}
	if req.Flags&^allowed != 0 {
		return errnoInval
	}
	switch req.Type {
	case cmdFlush:
		return errnoOK
	case cmdRead, cmdWrite, cmdTrim, cmdWriteZeroes:
	default:
		return errnoInval
	}
	if t.ro && req.Type != cmdRead {
		return errnoPerm
	}
	if (req.Type == cmdRead || req.Type == cmdWrite) && req.Length > MaxPayload {
		// EOVERFLOW is for structured replies only; simple replies say
		// EINVAL.
		return errnoInval
	}
	if req.Length == 0 {
		return errnoInval
	}
	if req.Offset > t.size || uint64(req.Length) > t.size-req.Offset {
		// The protocol asks for ENOSPC on writes past the end and EINVAL
		// on reads and trims.
		if req.Type == cmdWrite || req.Type == cmdWriteZeroes {
			return errnoNoSpc
		}
		return errnoInval
	}
	return errnoOK
}

// readData is a read's reply payload: the request's buffer, or the slices
// a SharedReader returned.
type readData struct {
	buf    []byte
	shared [][]byte
}

func (d readData) appendTo(bufs net.Buffers) net.Buffers {
	if d.shared != nil {
		return append(bufs, d.shared...)
	}
	if len(d.buf) > 0 {
		return append(bufs, d.buf)
	}
	return bufs
}

// SharedReader is an Export that can serve a read without copying its
// data into the request's buffer: it returns slices whose concatenation is
// the data, parts of p or memory it shares between requests and never
// modifies. The server only writes them to the client (one writev), which
// saves a copy of every byte read.
type SharedReader interface {
	ReadShared(ctx context.Context, p []byte, off int64) ([][]byte, error)
}

// execute performs one checked request and returns the reply's errno and,
// for a successful read, its data.
func (t *transmission) execute(ctx context.Context, j job) (uint32, readData) {
	req := j.req
	// The clock is read only for an Observer: without one a request costs
	// no time reads.
	var start time.Time
	if t.obs != nil {
		start = t.now()
	}
	var data readData
	var err error
	if t.sr != nil && req.Type == cmdRead {
		data.shared, err = t.sr.ReadShared(ctx, *j.buf, int64(req.Offset))
	} else {
		err = t.apply(ctx, j)
		if req.Type == cmdRead {
			data.buf = *j.buf
		}
	}
	if t.obs != nil {
		t.obs.Request(opName(req.Type), observedLen(req), t.now().Sub(start), err)
	}
	if err != nil {
		errno := errnoOf(err)
		lvl := slog.LevelWarn
		if errno == errnoInval || ctx.Err() != nil {
			lvl = slog.LevelDebug
		}
		t.log.Log(ctx, lvl, "nbd request failed", "cmd", req.Type, "offset", req.Offset, "length", req.Length, "errno", errno, "err", err)
		return errno, readData{}
	}
	return errnoOK, data
}

// apply performs one checked request on the export, with the flush a FUA
// flag asks for.
func (t *transmission) apply(ctx context.Context, j job) error {
	req := j.req
	off, n := int64(req.Offset), int64(req.Length)
	var err error
	switch req.Type {
	case cmdRead:
		return t.exp.ReadAt(ctx, *j.buf, off)
	case cmdWrite:
		if j.pipe == nil {
			err = t.exp.WriteAt(ctx, *j.buf, off)
			break
		}
		err = t.writeSpliced(ctx, off, n, j.prefixBytes(), j.pipe)
	case cmdTrim:
		err = t.exp.Zero(ctx, off, n, true)
	case cmdWriteZeroes:
		err = t.exp.Zero(ctx, off, n, req.Flags&cmdFlagNoHole == 0)
	case cmdFlush:
		return t.exp.Flush(ctx)
	}
	if err == nil && req.Flags&cmdFlagFUA != 0 {
		err = t.exp.Flush(ctx)
	}
	return err
}

// writeSpliced writes a spliced payload, prefix then the pipe's bytes, into
// the export's file.
func (t *transmission) writeSpliced(ctx context.Context, off, n int64, prefix []byte, p *pipe) error {
	return t.fw.WriteFrom(ctx, off, n, func(dst *os.File) error {
		if _, err := dst.WriteAt(prefix, off); err != nil {
			return err
		}
		return p.drainTo(dst, off+int64(len(prefix)))
	})
}

func (t *transmission) replyLog(req request, errno uint32, data readData) {
	if err := t.reply(req.Cookie, errno, data); err != nil {
		t.log.Debug("nbd reply", "err", err)
		// Unblock the reader so the connection ends.
		t.sess.conn.Close()
	}
}

// reply writes a simple reply and its data as one unit.
func (t *transmission) reply(cookie uint64, errno uint32, data readData) error {
	var hdr [simpleReplyLen]byte
	putSimpleReply(hdr[:], errno, cookie)
	var err error
	switch {
	case data.shared != nil:
		err = t.out.send(data.appendTo(net.Buffers{hdr[:]})...)
	case len(data.buf) == 0:
		err = t.out.send(hdr[:])
	default:
		err = t.out.send(hdr[:], data.buf)
	}
	if err != nil {
		return fmt.Errorf("send reply: %w", err)
	}
	return nil
}

// flight bounds the requests in flight on one connection and the bytes of
// their buffers. Only the connection's reader acquires, so a request larger
// than the byte budget is admitted alone rather than never.
type flight struct {
	mu       sync.Mutex
	cond     *sync.Cond
	n, max   int
	bytes    int64
	maxBytes int64
}

func newFlight(maxN int, maxBytes int64) *flight {
	f := &flight{max: maxN, maxBytes: maxBytes}
	f.cond = sync.NewCond(&f.mu)
	return f
}

func (f *flight) acquire(size int) {
	f.mu.Lock()
	for f.n >= f.max || f.n > 0 && f.bytes+int64(size) > f.maxBytes {
		f.cond.Wait()
	}
	f.n++
	f.bytes += int64(size)
	f.mu.Unlock()
}

func (f *flight) release(size int) {
	f.mu.Lock()
	f.n--
	f.bytes -= int64(size)
	f.mu.Unlock()
	f.cond.Signal()
}
