package exchange

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/internal/peerlimit"
)

// Store is what the server needs from the local block store;
// blockstore.Store satisfies it. Get must verify what it returns and report
// bad bytes as blockstore.ErrCorrupt.
type Store interface {
	Get(ctx context.Context, c cid.Cid) ([]byte, error)
	Has(ctx context.Context, c cid.Cid) (bool, error)
	PutMany(ctx context.Context, bs []blockstore.Block) error
}

// sendingStore is a Store that can skip hashing blocks it verified before
// (blockstore.Disk): the server reads what it sends with GetToSend, since
// the peer verifies every block it receives anyway. GetToSend appends the
// block to dst, so a response's blocks share one pooled buffer.
type sendingStore interface {
	GetToSend(ctx context.Context, c cid.Cid, dst []byte) ([]byte, error)
}

// Server answers exchange requests from peers out of a Store. Its fields
// must not change once it serves; one Server serves any number of streams
// concurrently.
type Server struct {
	Store  Store
	Logger *slog.Logger // nil discards
	// Accept, if set, is asked before storing the n blocks (bytes of
	// payload) a peer pushes, for instance to refuse when full. An error
	// fails the request; one matching blockstore.ErrNoSpace reaches the
	// peer as no-space. Nil accepts everything. It must not block for long:
	// the peer waits on it. The server calls release, if not nil, once the
	// store's put has returned, so Accept can count the bytes admitted but
	// not yet written.
	Accept func(peer string, n int, bytes int64) (release func(), err error)
	// Storing, if set, is told of the verified blocks a peer pushes just
	// before they are stored: the node's GC keeps them for a while, since
	// the catalog entry naming their root arrives after them.
	Storing func(bs []blockstore.Block)

	// FrameLimit, if above 0, lowers MaxFrameSize for the requests this
	// server reads: tests scale their attacks, and the memory they
	// measure, down with it.
	FrameLimit int
	// Frames is the node's budget of frame bytes this server takes from
	// after a peer's turn; nil means the process's (DefaultFrameBudget).
	Frames *peerlimit.Bytes

	turns peerlimit.Turns // of MaxServedPerPeer; Limit set by init
	init  sync.Once

	// writeBound, if set, replaces replyWriteBound (tests); idleBound and
	// stallWindow replace IdleTimeout and requestStallWindow.
	writeBound  time.Duration
	idleBound   time.Duration
	stallWindow time.Duration
}

// replyFloorRate is the slowest a peer may read a reply before the server
// gives up on it: a peer that asks and stops reading holds a goroutine and
// a stream only until then. Generous on purpose: a full 17 MiB frame gets
// 30 s plus 136 s, where a 50 Mbit/s link shared by a dozen streams
// carries it in about 35 s.
const replyFloorRate = 128 << 10 // bytes per second

// replyWriteBound is how long writing a reply of n bytes may take.
func replyWriteBound(n int) time.Duration {
	return 30*time.Second + time.Duration(n)*time.Second/replyFloorRate
}

// ServeStream serves requests from peer on rw, one at a time, until the
// peer closes the stream, a read or write fails, the peer breaks the
// protocol, or ctx ends. It closes rw before returning; closing it is also
// how ctx unblocks a pending read.
func (s *Server) ServeStream(ctx context.Context, peer string, rw io.ReadWriteCloser) {
	stop := context.AfterFunc(ctx, func() { rw.Close() })
	defer stop()
	defer rw.Close()

	log := s.logger().With("peer", PeerName(peer))
	s.init.Do(func() {
		s.turns.Limit = MaxServedPerPeer
		if s.Frames == nil {
			s.Frames = defaultFrames()
		}
	})
	c := newConn(rw)
	defer c.release()
	for {
		body, turn, frame, err := s.readRequest(ctx, c, peer)
		if err != nil {
			switch {
			case errors.Is(err, io.EOF), ctx.Err() != nil:
			case errors.Is(err, errFrameTooLarge):
				log.Warn("refusing oversized frame", "err", err)
				s.reply(c, log, failure(codeBadRequest, err))
			case errors.Is(err, errIdle):
				// A client's pooled stream, most likely: it opens another.
				log.Debug("idle stream closed", "err", err)
			case errors.Is(err, errTooSlow):
				log.Warn("peer too slow: stream reset", "err", err)
			default:
				log.Debug("stream read failed", "err", err)
			}
			return
		}
		req, err := decodeRequest(body)
		if err != nil {
			// The framing held but the content did not: the peer is broken
			// or hostile, so say why once and hang up.
			log.Warn("refusing malformed request", "err", err)
			s.reply(c, log, failure(codeBadRequest, err))
			frame()
			turn()
			return
		}
		if req.op == opGet {
			// A Get's CIDs are copies: its request frame goes back before
			// its reply's bytes are taken, so that no round trip holds
			// bytes while it waits for more.
			c.releaseRead()
			frame()
			if frame, err = s.Frames.Take(ctx, getReplyBytes); err != nil {
				turn()
				return
			}
		}
		// A request's blocks share the pooled frame buffer: handle is
		// done with them once it returns (PutMany keeps no data).
		ok := s.reply(c, log, s.handle(ctx, c, peer, log, req))
		c.release()
		frame()
		turn()
		if !ok {
			return
		}
	}
}

// readRequest reads the next request frame on c within the bounds: its
// header within IdleTimeout; then a turn of peer's (MaxServedPerPeer),
// waited for as long as it takes (the turns held are bounded in time, and
// a waiting stream holds no frame), and the frame's bytes from the node's
// budget (Frames); then the body, which must go on arriving
// (requestMinProgress). Past a bound it aborts the stream and returns
// errIdle or errTooSlow. On success the caller gives the frame's bytes
// (frame) and the turn (turn) back once done with them.
func (s *Server) readRequest(ctx context.Context, c *conn, peer string) (body []byte, turn, frame func(), err error) {
	idle := abortAfter(c, cmp.Or(s.idleBound, IdleTimeout))
	var reading *stallWatch
	c.sized = func(n uint64) error {
		if !idle.stop() {
			return errIdle
		}
		if s.FrameLimit > 0 && n > uint64(s.FrameLimit) {
			return fmt.Errorf("frame of %d bytes: %w (%d)", n, errFrameTooLarge, s.FrameLimit)
		}
		if turn, err = s.turns.Take(ctx, nil, peer); err != nil {
			return err
		}
		if frame, err = s.Frames.Take(ctx, int64(n)); err != nil {
			turn()
			return err
		}
		reading = watchStall(c, cmp.Or(s.stallWindow, requestStallWindow), func() { c.abort() })
		return nil
	}
	body, err = c.readFrame()
	c.sized = nil
	if reading == nil {
		if !idle.stop() {
			return nil, nil, nil, fmt.Errorf("no request within %v: %w", cmp.Or(s.idleBound, IdleTimeout), errIdle)
		}
		return nil, nil, nil, err
	}
	if !reading.stop() {
		err = fmt.Errorf("request stalled below %d bytes in %v: %w", requestMinProgress, cmp.Or(s.stallWindow, requestStallWindow), errTooSlow)
	}
	if err != nil {
		frame()
		turn()
		return nil, nil, nil, err
	}
	return body, turn, frame, nil
}

// reply writes resp and reports whether the stream is still usable. A
// write that outlasts replyWriteBound (or s.writeBound, if set) aborts the
// stream.
func (s *Server) reply(c *conn, log *slog.Logger, resp response) bool {
	buf := c.writeBuffer()
	if err := encodeResponse(buf, resp); err != nil {
		log.Error("encode response", "err", err)
		return false
	}
	bound := s.writeBound
	if bound == 0 {
		bound = replyWriteBound(buf.Len())
	}
	timer := time.AfterFunc(bound, func() { c.abort() })
	err := c.writeFrame()
	if !timer.Stop() {
		log.Warn("peer did not read a reply in time: stream aborted", "bytes", buf.Len(), "bound", bound)
		return false
	}
	if err != nil {
		log.Debug("stream write failed", "err", err)
		return false
	}
	return true
}

func (s *Server) handle(ctx context.Context, c *conn, peer string, log *slog.Logger, req request) response {
	switch req.op {
	case opHas:
		return s.has(ctx, req.cids)
	case opGet:
		return s.get(ctx, c, log, req.cids)
	case opPut:
		return s.put(ctx, peer, req.blocks)
	default:
		// decodeRequest lets no other op through.
		return failure(codeBadRequest, fmt.Errorf("unknown %s", req.op))
	}
}

func (s *Server) has(ctx context.Context, cids []cid.Cid) response {
	// Heal asks of every block of the catalog on every pass: a store
	// that answers many at once does so in one pass over its index.
	if ms, ok := s.Store.(blockstore.ManyHaser); ok {
		out, err := ms.HasMany(ctx, cids)
		if err != nil {
			return failure(codeInternal, fmt.Errorf("has %d blocks: %w", len(cids), err))
		}
		return response{has: out}
	}
	out := make([]bool, len(cids))
	for i, c := range cids {
		ok, err := s.Store.Has(ctx, c)
		if err != nil {
			return failure(codeInternal, fmt.Errorf("has %s: %w", c, err))
		}
		out[i] = ok
	}
	return response{has: out}
}

// get answers a prefix of cids whose blocks fit MaxGetPayload, always at
// least one CID so the client progresses (a single block always fits).
// The blocks may share sc's block slab, valid until sc's release.
func (s *Server) get(ctx context.Context, sc *conn, log *slog.Logger, cids []cid.Cid) response {
	read := s.Store.Get
	if ss, ok := s.Store.(sendingStore); ok {
		slab := sc.blockSlab()
		defer func() { sc.keepSlab(slab) }()
		read = func(ctx context.Context, c cid.Cid) ([]byte, error) {
			out, err := ss.GetToSend(ctx, c, slab)
			if err != nil {
				return nil, err
			}
			data := out[len(slab):len(out):len(out)]
			slab = out
			return data, nil
		}
	}
	var blocks []blockstore.Block
	size := 0
	for i, c := range cids {
		data, err := read(ctx, c)
		switch {
		case errors.Is(err, blockstore.ErrNotFound):
			continue
		case errors.Is(err, blockstore.ErrCorrupt):
			// Never serve bad bytes: to the peer the block is missing,
			// and the holder learns of it here for heal to repair.
			log.Warn("not serving corrupt block", "cid", c, "err", err)
			continue
		case err != nil:
			return failure(codeInternal, fmt.Errorf("get %s: %w", c, err))
		case len(data) > maxBlockSize:
			// No peer would accept it; the store should not hold it.
			log.Warn("not serving oversized block", "cid", c, "bytes", len(data))
			continue
		}
		if len(blocks) > 0 && size+len(data) > MaxGetPayload {
			return response{blocks: blocks, next: i}
		}
		size += len(data)
		blocks = append(blocks, blockstore.Block{CID: c, Data: data})
	}
	return response{blocks: blocks, next: len(cids)}
}

func (s *Server) put(ctx context.Context, peer string, raw []blockstore.Block) response {
	blocks := make([]blockstore.Block, len(raw))
	var size int64
	for i, b := range raw {
		// NewBlock hashes once and marks the block hashed, so the store
		// does not hash it again; comparing CIDs is blockstore.Verify.
		nb := blockstore.NewBlock(b.CID.Type(), b.Data)
		if !nb.CID.Equals(b.CID) {
			return failure(codeCorrupt, fmt.Errorf("pushed block %s hashes to %s: %w", b.CID, nb.CID, blockstore.ErrCorrupt))
		}
		blocks[i] = nb
		size += int64(len(b.Data))
	}
	if s.Accept != nil {
		release, err := s.Accept(peer, len(blocks), size)
		if err != nil {
			return failure(codeOf(err), fmt.Errorf("refusing %d blocks (%d bytes): %w", len(blocks), size, err))
		}
		if release != nil {
			defer release()
		}
	}
	if s.Storing != nil {
		s.Storing(blocks)
	}
	if err := s.Store.PutMany(ctx, blocks); err != nil {
		return failure(codeOf(err), fmt.Errorf("store %d blocks: %w", len(blocks), err))
	}
	return response{}
}

func failure(c code, err error) response {
	msg := err.Error()
	if len(msg) > maxMessageLen {
		msg = strings.ToValidUTF8(msg[:maxMessageLen], "")
	}
	return response{code: c, message: msg}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger.With("component", "exchange")
}
