package datapath

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"golang.org/x/time/rate"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/exchange"
)

// ErrNoSource means no live source sent some block of the transfer.
var ErrNoSource = errors.New("no source sent the blocks")

// fetcher moves blocks from a transfer's sources into the local store.
// Safe for concurrent use.
type fetcher struct {
	sources    []string
	peers      Peers
	store      Store
	sched      *Scheduler
	flow       *flow
	limit      *rate.Limiter
	track      *tracker
	log        *slog.Logger
	thresholds Thresholds

	mu      sync.Mutex
	dropped map[string]bool
	// bad is, per peer, the blocks it sent with bytes that do not hash to
	// their CID: not asked of it again. One rotted block on a peer's disk
	// costs that block; maxBadBlocks of them, a lying peer, cost the peer.
	bad    map[string]map[cid.Cid]bool
	failed map[string]time.Time // when each peer last failed a request
}

// holding is which blocks of a batch a peer said it holds.
type holding struct {
	peer string
	has  map[cid.Cid]bool
}

// fetchData makes the data blocks of batch n present locally: first from
// the sources other than the origin that hold them, then from the origin,
// then from anyone left.
func (f *fetcher) fetchData(ctx context.Context, n int, batch []cid.Cid, diskBlockSize int64) error {
	_, err := f.fetch(ctx, batch, f.holders(ctx, n, batch), diskBlockSize, true)
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("batch %d of %d blocks: %w", n, len(batch), err)
	}
	return err
}

// fetch gets want from the holders, asking each for what it said it holds,
// then from every live source not asked yet, in order, for what is still
// missing. Each answer is stored before the next peer is asked. It returns
// the blocks fetched; with data set they count as transferred data.
func (f *fetcher) fetch(ctx context.Context, want []cid.Cid, holders []holding, each int64, data bool) (map[cid.Cid][]byte, error) {
	pending := make(map[cid.Cid]bool, len(want))
	for _, c := range want {
		pending[c] = true
	}
	out := make(map[cid.Cid][]byte, len(want))
	asked := make(map[string]bool)
	var errs []error
	ask := func(peer string, cids []cid.Cid) error {
		asked[peer] = true
		for {
			got, err, keepErr := f.get(ctx, peer, cids, each*int64(len(cids)), data)
			for c, b := range got {
				delete(pending, c)
				out[c] = b
			}
			switch {
			case keepErr != nil:
				return keepErr
			case err == nil:
				return nil
			case ctx.Err() != nil:
				return ctx.Err()
			}
			errs = append(errs, err)
			// A block with bad bytes loses the rest of its response: ask
			// again for what is still pending, without that block, until
			// the peer is dropped (bounded by maxBadBlocks).
			var bad *exchange.BadBlockError
			if !errors.As(err, &bad) || f.isDropped(peer) {
				return nil
			}
			cids = slices.DeleteFunc(cids, func(c cid.Cid) bool { return !pending[c] || f.sentBad(peer, c) })
			if len(cids) == 0 {
				return nil
			}
		}
	}
	for _, h := range holders {
		var cids []cid.Cid
		for _, c := range want {
			if pending[c] && h.has[c] && !f.sentBad(h.peer, c) {
				cids = append(cids, c)
			}
		}
		if len(cids) == 0 || f.isDropped(h.peer) {
			continue
		}
		if err := ask(h.peer, cids); err != nil {
			return nil, err
		}
	}
	for _, peer := range f.fallbacks() {
		if len(pending) == 0 {
			break
		}
		if asked[peer] || f.isDropped(peer) {
			continue
		}
		var cids []cid.Cid
		for _, c := range want {
			if pending[c] && !f.sentBad(peer, c) {
				cids = append(cids, c)
			}
		}
		if len(cids) == 0 {
			continue
		}
		if err := ask(peer, cids); err != nil {
			return nil, err
		}
	}
	if len(pending) > 0 {
		errs = append(errs, fmt.Errorf("%d of %d blocks: %w", len(pending), len(want), ErrNoSource))
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// get asks peer for cids, expected to come to about expect bytes, once
// the transfer's bandwidth limit and the scheduler let it go, and stores
// each response's blocks as it arrives, while they are in the exchange's
// buffer. It returns the blocks stored, even on an error: with data set
// they count as transferred data and only their CIDs are returned;
// otherwise (map nodes) their bytes too. err is the request's failure,
// noted against peer; keepErr a failure to store, which ends the transfer.
func (f *fetcher) get(ctx context.Context, peer string, cids []cid.Cid, expect int64, data bool) (got map[cid.Cid][]byte, err, keepErr error) {
	if err := waitBytes(ctx, f.limit, expect); err != nil {
		return nil, err, nil
	}
	if err := f.sched.admit(ctx, f.flow, expect); err != nil {
		return nil, err, nil
	}
	got = make(map[cid.Cid][]byte, len(cids))
	var total int64
	err = f.peers.GetEach(ctx, peer, cids, func(blocks []blockstore.Block) error {
		// Verified by the exchange: not hashed again.
		if err := f.store.PutMany(ctx, blocks); err != nil {
			keepErr = fmt.Errorf("store %d blocks from %s: %w", len(blocks), exchange.PeerName(peer), err)
			return keepErr
		}
		var n int64
		for _, b := range blocks {
			got[b.CID] = nil
			if !data {
				got[b.CID] = bytes.Clone(b.Data)
			}
			n += int64(len(b.Data))
		}
		total += n
		if data {
			f.track.received(peer, len(blocks), n, time.Now())
		}
		return nil
	})
	if keepErr != nil {
		return got, nil, keepErr
	}
	if extra := total - expect; extra > 0 {
		f.sched.charge(f.flow, extra)
		if werr := waitBytes(ctx, f.limit, extra); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			f.fail(peer, err)
		}
		return got, fmt.Errorf("get %d blocks from %s: %w", len(cids), exchange.PeerName(peer), err), nil
	}
	return got, nil, nil
}

// holders asks the live sources other than the origin, except those
// backing off, which blocks of batch n they hold, and returns those that
// hold some, most first; ties rotate with n to spread the load.
func (f *fetcher) holders(ctx context.Context, n int, batch []cid.Cid) []holding {
	var others []string
	now := time.Now()
	for _, p := range f.sources[1:] {
		if !f.isDropped(p) && !f.backingOff(p, now) {
			others = append(others, p)
		}
	}
	if len(others) == 0 {
		return nil
	}
	found := make([]holding, len(others))
	var wg sync.WaitGroup
	for i, p := range others {
		wg.Go(func() {
			has, err := f.peers.Has(ctx, p, batch)
			if err == nil && len(has) != len(batch) {
				err = fmt.Errorf("has of %d blocks answered with %d", len(batch), len(has))
			}
			if err != nil {
				// Only a hint: the origin is asked instead.
				if ctx.Err() == nil {
					f.fail(p, err)
				}
				return
			}
			h := holding{peer: p, has: make(map[cid.Cid]bool)}
			for j, ok := range has {
				if ok {
					h.has[batch[j]] = true
				}
			}
			found[i] = h
		})
	}
	wg.Wait()
	var out []holding
	for k := range found {
		if h := found[(k+n)%len(found)]; len(h.has) > 0 {
			out = append(out, h)
		}
	}
	slices.SortStableFunc(out, func(a, b holding) int { return cmp.Compare(len(b.has), len(a.has)) })
	return out
}

// fallbacks returns the live sources in order, those backing off last.
func (f *fetcher) fallbacks() []string {
	now := time.Now()
	var ready, late []string
	for _, p := range f.sources {
		switch {
		case f.isDropped(p):
		case f.backingOff(p, now):
			late = append(late, p)
		default:
			ready = append(ready, p)
		}
	}
	return append(ready, late...)
}

// maxBadBlocks is how many blocks with bad bytes a peer may send before it
// is dropped for the rest of the transfer.
const maxBadBlocks = 4

// fail notes that peer failed a request. A block with bad bytes is not
// asked of that peer again; the maxBadBlocks-th, or any other bad answer
// (a block not asked for), drops the peer for good.
func (f *fetcher) fail(peer string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var bad *exchange.BadBlockError
	if errors.As(err, &bad) {
		if f.bad == nil {
			f.bad = map[string]map[cid.Cid]bool{}
		}
		if f.bad[peer] == nil {
			f.bad[peer] = map[cid.Cid]bool{}
		}
		f.bad[peer][bad.CID] = true
		f.log.Warn("peer sent a block with bad bytes; not asking it for that block again", "peer", peer, "block", bad.CID)
	}
	if errors.Is(err, exchange.ErrBadBlock) && (bad == nil || len(f.bad[peer]) >= maxBadBlocks) {
		if !f.dropped[peer] {
			f.dropped[peer] = true
			f.track.dropped(peer)
			f.log.Warn("dropping peer that sent a bad block", "peer", peer, "err", err)
		}
		return
	}
	if bad != nil {
		return // its other blocks are still welcome
	}
	f.failed[peer] = time.Now()
	f.log.Debug("peer failed a request", "peer", peer, "err", err)
}

// sentBad reports whether peer sent c with bad bytes before.
func (f *fetcher) sentBad(peer string, c cid.Cid) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bad[peer][c]
}

func (f *fetcher) isDropped(peer string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dropped[peer]
}

func (f *fetcher) backingOff(peer string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	at, ok := f.failed[peer]
	return ok && now.Sub(at) < f.thresholds.PeerBackoff
}

// badFrom returns the blocks peer sent with bad bytes.
func (f *fetcher) badFrom(peer string) []cid.Cid {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Collect(maps.Keys(f.bad[peer]))
}
