package exchange

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
)

// Dialer opens a new stream to a peer speaking Protocol. Peers are named by
// opaque strings (libp2p peer IDs in the daemon).
type Dialer interface {
	OpenStream(ctx context.Context, peer string) (io.ReadWriteCloser, error)
}

// Client makes exchange requests to peers. It keeps a few idle streams per
// peer for reuse; Close releases them. The zero Client with a Dialer set
// is ready to use; it is safe for concurrent use and must not be copied
// after first use.
//
// Every call blocks until it completes, fails, or ctx ends; when ctx ends
// the stream in use is aborted, so the call returns promptly with ctx.Err().
// Calls larger than the wire limits are split into several round trips.
// At most MaxServedPerPeer round trips are in flight to a peer at once,
// what its server serves at once; further calls wait here, those with a
// Foreground context first.
type Client struct {
	Dialer Dialer

	pool     streamPool
	init     sync.Once
	inFlight inFlight
}

// Has reports, for each CID in order, whether peer holds that block.
func (c *Client) Has(ctx context.Context, peer string, cids []cid.Cid) ([]bool, error) {
	if err := checkCIDs(cids); err != nil {
		return nil, fmt.Errorf("has: %w", err)
	}
	out := make([]bool, 0, len(cids))
	for batch := range slices.Chunk(cids, MaxCIDs) {
		err := c.roundTrip(ctx, peer, request{op: opHas, cids: batch}, false, func(resp response) error {
			if len(resp.has) != len(batch) {
				return fmt.Errorf("peer %s answered has of %d CIDs with %d: %w", PeerName(peer), len(batch), len(resp.has), ErrProtocol)
			}
			out = append(out, resp.has...)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Get fetches the blocks peer has among cids; absent blocks are simply not
// in the map. Every block is verified against its CID: one that does not
// match gives an error matching ErrBadBlock, and the caller should drop
// the peer. On any error the blocks fetched so far are discarded.
func (c *Client) Get(ctx context.Context, peer string, cids []cid.Cid) (map[cid.Cid]blockstore.Block, error) {
	out := make(map[cid.Cid]blockstore.Block, len(cids))
	err := c.get(ctx, peer, cids, true, func(blocks []blockstore.Block) error {
		for _, b := range blocks {
			out[b.CID] = b
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GetEach fetches the blocks peer has among cids like Get, but hands the
// verified blocks of each response to fn as they arrive, in one or more
// calls, instead of collecting them. Their bytes are valid only until fn
// returns: they share a pooled frame buffer, so a bulk transfer that
// stores them in fn reads every response into memory already in use
// rather than a fresh buffer of its own. An error from fn ends the call
// and is returned as it is; the blocks of earlier calls were handed over.
func (c *Client) GetEach(ctx context.Context, peer string, cids []cid.Cid, fn func([]blockstore.Block) error) error {
	return c.get(ctx, peer, cids, false, fn)
}

// get runs the round trips of Get and GetEach; owned says whether each
// response is read into a buffer of its own that the blocks keep.
func (c *Client) get(ctx context.Context, peer string, cids []cid.Cid, owned bool, fn func([]blockstore.Block) error) error {
	if err := checkCIDs(cids); err != nil {
		return fmt.Errorf("get: %w", err)
	}
	for batch := range slices.Chunk(cids, MaxCIDs) {
		for len(batch) > 0 {
			var next int
			err := c.roundTrip(ctx, peer, request{op: opGet, cids: batch}, owned, func(resp response) error {
				if resp.next < 1 || resp.next > len(batch) {
					return fmt.Errorf("peer %s answered %d of %d CIDs: %w", PeerName(peer), resp.next, len(batch), ErrProtocol)
				}
				if err := acceptBlocks(batch[:resp.next], resp.blocks); err != nil {
					return fmt.Errorf("peer %s: %w", PeerName(peer), err)
				}
				next = resp.next
				return fn(resp.blocks)
			})
			if err != nil {
				return err
			}
			batch = batch[next:]
		}
	}
	return nil
}

// acceptBlocks verifies blocks sent in answer to asked.
func acceptBlocks(asked []cid.Cid, blocks []blockstore.Block) error {
	want := make(map[cid.Cid]struct{}, len(asked))
	for _, c := range asked {
		want[c] = struct{}{}
	}
	for _, b := range blocks {
		if _, ok := want[b.CID]; !ok {
			return fmt.Errorf("block %s was not asked for: %w", b.CID, ErrBadBlock)
		}
	}
	return verifyAll(blocks)
}

// Put hands blocks to peer to keep and returns once peer has stored them
// durably. A refusal for lack of space matches blockstore.ErrNoSpace. Puts
// larger than the wire limits go in several round trips; if one fails, the
// earlier ones stay stored, which is harmless since blocks are immutable.
func (c *Client) Put(ctx context.Context, peer string, bs []blockstore.Block) error {
	for _, b := range bs {
		if err := blockstore.CheckCID(b.CID); err != nil {
			return fmt.Errorf("put: %w", err)
		}
		if len(b.Data) > maxBlockSize {
			return fmt.Errorf("put %s: %d bytes exceeds the %d-byte limit", b.CID, len(b.Data), maxBlockSize)
		}
	}
	for len(bs) > 0 {
		n, size := 0, 0
		for n < len(bs) && n < MaxCIDs && size+len(bs[n].Data) <= MaxPutPayload {
			size += len(bs[n].Data)
			n++
		}
		if err := c.roundTrip(ctx, peer, request{op: opPut, blocks: bs[:n]}, false, func(response) error { return nil }); err != nil {
			return err
		}
		bs = bs[n:]
	}
	return nil
}

// Close closes the idle streams. Calls in flight finish normally; their
// streams are closed rather than kept.
func (c *Client) Close() error {
	c.pool.close()
	return nil
}

// roundTrip sends req to peer and hands a successful response to use, or
// returns an error: a remote error response becomes a *remoteError. With
// owned set the response is read into a buffer of its own, which what use
// keeps of it may share; otherwise into the stream's pooled frame buffer,
// valid only until use returns. use's error is returned as it is.
//
// It reuses an idle stream if there is one. A reused stream may have died
// while idle (the peer restarted or dropped it), which shows only when it
// is used, so a failure on one is retried on the next idle stream or a
// fresh one: every request is idempotent, and the pool is bounded, so the
// retries end with a fresh stream whose failure is final.
func (c *Client) roundTrip(ctx context.Context, peer string, req request, owned bool, use func(response) error) error {
	c.init.Do(func() { c.inFlight.limit = MaxServedPerPeer })
	done, err := c.inFlight.take(ctx, peer)
	if err != nil {
		return err
	}
	defer done()
	for {
		sc, reused, err := c.stream(ctx, peer)
		if err != nil {
			return err
		}
		resp, err := exchange(ctx, sc, req, owned)
		if err == nil {
			if resp.code != codeOK {
				c.done(peer, sc, resp)
				return fmt.Errorf("peer %s: %s: %w", PeerName(peer), req.op, &remoteError{code: resp.code, message: resp.message})
			}
			err := use(resp)
			c.done(peer, sc, resp)
			return err
		}
		// A failed round trip may have stopped midway, with the server
		// still writing its reply: abort, so that its write fails rather
		// than waiting on a reader that is gone.
		sc.abort()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		if reused && !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrStalled) {
			continue
		}
		return fmt.Errorf("peer %s: %s: %w", PeerName(peer), req.op, err)
	}
}

// stream returns an idle stream to peer, or a new one.
func (c *Client) stream(ctx context.Context, peer string) (sc *conn, reused bool, err error) {
	if sc := c.pool.take(peer); sc != nil {
		return sc, true, nil
	}
	rw, err := c.Dialer.OpenStream(ctx, peer)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, false, ctxErr
		}
		return nil, false, fmt.Errorf("open stream to %s: %w", PeerName(peer), err)
	}
	return newConn(rw), false, nil
}

// done pools a stream after a completed round trip, unless the server is
// about to close it.
func (c *Client) done(peer string, sc *conn, resp response) {
	if resp.code == codeBadRequest {
		sc.close()
		return
	}
	sc.release()
	c.pool.put(peer, sc)
}

// exchange writes req and reads the response on sc, into a buffer of its
// own if owned is set. The stream is aborted if ctx ends, which unblocks
// the read or write in progress here and the server's.
func exchange(ctx context.Context, sc *conn, req request, owned bool) (response, error) {
	stop := context.AfterFunc(ctx, func() { sc.abort() })
	var watch *stallWatch
	window, watched := ctx.Value(stallWindowKey{}).(time.Duration)
	if watched {
		watch = watchStall(sc, window, func() { sc.abort() })
	}
	if n, ok := ctx.Value(stallNoticeKey{}).(stallNotice); ok {
		defer watchStall(sc, n.window, n.notice).stop()
	}
	resp, err := sendAndReceive(sc, req, owned)
	// An answer read whole stands, even if the watch broke the stream
	// as its last window closed.
	stalled := watch != nil && !watch.stop()
	if !stop() {
		// ctx ended and aborted the stream, maybe after a full round trip:
		// the stream is gone either way, so the call fails.
		return response{}, ctx.Err()
	}
	if err != nil && stalled {
		return response{}, fmt.Errorf("%w: less than %d bytes in %v", ErrStalled, requestMinProgress, window)
	}
	return resp, err
}

type stallWindowKey struct{}

// WithStallWindow returns a context under which each round trip of a
// Client fails with ErrStalled, its stream broken, once a window of d
// passes in which fewer than 16 KiB of its answer arrived. Unlike a
// deadline, it never cuts short an answer that keeps coming, however long
// it takes on a slow or crowded link; it ends one from a peer that took
// the request and sends nothing. The window starts once the request has
// its turn among the peer's requests in flight.
func WithStallWindow(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, stallWindowKey{}, d)
}

type stallNoticeKey struct{}

type stallNotice struct {
	window time.Duration
	notice func()
}

// WithStallNotice returns a context under which each round trip of a
// Client calls notice, once, when a window of d passes in which fewer than
// 16 KiB of its answer arrived, and goes on waiting for the answer: the
// caller may ask someone else meanwhile. The window starts as
// WithStallWindow's does.
func WithStallNotice(ctx context.Context, d time.Duration, notice func()) context.Context {
	return context.WithValue(ctx, stallNoticeKey{}, stallNotice{d, notice})
}

func sendAndReceive(sc *conn, req request, owned bool) (response, error) {
	if err := encodeRequest(sc.writeBuffer(), req); err != nil {
		return response{}, err
	}
	if err := sc.writeFrame(); err != nil {
		return response{}, err
	}
	read := sc.readFrame
	if owned {
		read = sc.readOwnedFrame
	}
	body, err := read()
	if err != nil {
		if errors.Is(err, errFrameTooLarge) {
			return response{}, fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		return response{}, err
	}
	resp, err := decodeResponse(body)
	if err != nil {
		return response{}, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return resp, nil
}

// checkCIDs refuses CIDs weft does not store before they reach the wire,
// where the server would take them for a broken peer and hang up.
func checkCIDs(cids []cid.Cid) error {
	for _, c := range cids {
		if err := blockstore.CheckCID(c); err != nil {
			return err
		}
	}
	return nil
}
