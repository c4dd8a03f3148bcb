package heal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/weft-mesh/weft/blockmap"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/exchange"
	"github.com/weft-mesh/weft/placement"
)

// Config configures a Healer.
type Config struct {
	Self  string // this node's placement ID
	Store Store  // the local store, without network fallback
	// Maps reads the catalog's block maps; its store should fetch map
	// nodes this node lacks from the mesh (see FetchingStore).
	Maps    *blockmap.Maps
	Peers   Peers
	Members func() []placement.Member // live members, this node included
	Roots   func() []Root
	// Redundancy is the account each pass's who-has answers update.
	Redundancy *Redundancy
	// Bandwidth caps the bytes per second heal copies; 0 means no cap.
	Bandwidth float64
	// Concurrency bounds the fetches in flight (default 4).
	Concurrency int
	// Interval is the time between passes when nothing triggers one
	// (default 30s).
	Interval time.Duration
	// Room, if set, is asked before each batch is fetched whether the
	// node can take bytes more: the batch's expected size, at most one
	// exchange response (exchange.MaxGetPayload). An error matching
	// blockstore.ErrNoSpace (so can the store's) ends the pass's fetches
	// with it: a full node does not fetch what it would throw away.
	Room   func(bytes int64) error
	Logger *slog.Logger
}

// fetchBatch bounds the blocks asked for in one request. 64-block batches
// (4 MiB, within the last-level cache with 4 in flight) copied no faster
// than these (bench-heal.sh, 3 alternating runs each: 238-251 vs 211-283
// MiB/s), nor, with responses stored from reused frames, 64-block batches
// 16 at a time (0.45-0.58 of a plain copy against 0.34-0.51): the copy is
// bound by the receive path (the store's write), not by how heal cuts its
// requests.
const fetchBatch = 256

// Status says what heal is doing and has done. The local API answers it as
// api.HealStatus, a conversion of this type (the same fields, in order).
type Status struct {
	Running bool
	Passes  int64
	// LastPass is when the last complete pass ended.
	LastPass time.Time
	// Pending is what the running pass still has to copy here.
	Pending      int64
	CopiedBlocks int64
	CopiedBytes  int64
	// FetchSeconds is the time spent copying, summed over the passes that
	// copied anything: CopiedBytes over it is heal's copy rate.
	FetchSeconds float64
	// DroppedBlocks are surplus copies removed after their placement set
	// confirmed them.
	DroppedBlocks int64
	LastError     string
}

// Healer runs heal passes: on a timer, and when Trigger is called
// (membership or catalog changes).
type Healer struct {
	cfg     Config
	log     *slog.Logger
	limit   *rate.Limiter
	trigger chan struct{}

	mu     sync.Mutex
	status Status
	short  int // blocks the last pass found short (see plan.short)
}

// New returns a Healer; call Run to start it.
func New(cfg Config) *Healer {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	limit := rate.NewLimiter(rate.Inf, 0)
	if cfg.Bandwidth > 0 {
		limit = rate.NewLimiter(rate.Limit(cfg.Bandwidth), rateBurst)
	}
	return &Healer{cfg: cfg, log: cfg.Logger, limit: limit, trigger: make(chan struct{}, 1)}
}

// rateBurst is the most heal may copy at once above its byte rate: small,
// so the cap holds over short windows too.
const rateBurst = 256 << 10

// waitBytes blocks until the bandwidth cap allows n more bytes.
func (h *Healer) waitBytes(ctx context.Context, n int) error {
	if h.limit.Limit() == rate.Inf {
		return nil
	}
	for n > 0 {
		step := min(n, rateBurst)
		if err := h.limit.WaitN(ctx, step); err != nil {
			return err
		}
		n -= step
	}
	return nil
}

// batchBlocks is the blocks asked of a peer per request: fetchBatch, or
// under a bandwidth cap as many as the cap's burst holds, so that the cap
// holds on the wire (a 16 MiB batch fetched at once and paid for after
// would overrun a cap of a few KiB/s by hours).
func (h *Healer) batchBlocks() int {
	if h.limit.Limit() == rate.Inf {
		return fetchBatch
	}
	return int(min(fetchBatch, max(1, rateBurst/h.expectBytes(1))))
}

// meanBlockBytes is the mean size of the blocks copied so far, 64 KiB
// before any.
func (h *Healer) meanBlockBytes() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.status.CopiedBlocks == 0 {
		return 64 << 10
	}
	return max(1, h.status.CopiedBytes/h.status.CopiedBlocks)
}

// expectBytes is the bytes n blocks are expected to come to under a cap,
// at meanBlockBytes. Without a cap it is 0: nothing is charged ahead.
func (h *Healer) expectBytes(n int) int {
	if h.limit.Limit() == rate.Inf {
		return 0
	}
	return n * int(h.meanBlockBytes())
}

// Trigger asks for a pass soon. It never blocks.
func (h *Healer) Trigger() {
	select {
	case h.trigger <- struct{}{}:
	default:
	}
}

// Status returns a copy of the current status.
func (h *Healer) Status() Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.status
}

// Run runs passes until ctx ends. A trigger that arrives during a pass
// starts another right after it, so no change is missed. A pass that left
// blocks short of their placement sets is followed by another soon: the
// missing copies are being made by the other members' passes, and only a
// pass here counts them (waiting the whole Interval for that made heal
// after a loss take as long as the interval). The delay starts at
// followUpDelay after a trigger or a pass that saw the count change, and
// doubles up to Interval while it stays the same.
func (h *Healer) Run(ctx context.Context) {
	var next followUps
	for {
		wait := next.wait(h.shortBlocks(), h.cfg.Interval)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-h.trigger:
			t.Stop()
			next = followUps{}
		}
		if err := h.Pass(ctx); err != nil && ctx.Err() == nil {
			h.log.Warn("heal pass failed", "err", err)
		}
	}
}

// followUps decides how long Run waits before its next pass. The zero
// value is the state after a trigger.
type followUps struct {
	delay time.Duration // the next follow-up's wait; 0: followUpDelay
	last  int           // the short count of the previous decision; 0: none
}

// wait returns how long to wait before the next pass, given the short
// count of the last pass: the interval when nothing is short; else
// followUpDelay after a change of the count, doubling up to interval
// while it stays the same.
func (f *followUps) wait(short int, interval time.Duration) time.Duration {
	if short <= 0 {
		return interval
	}
	if short != f.last || f.delay == 0 {
		f.delay = followUpDelay
	}
	f.last = short
	wait := min(f.delay, interval)
	f.delay = min(f.delay*2, interval)
	return wait
}

// followUpDelay is the first wait before a pass that follows one which
// left blocks short: about the time the other members take to copy them.
const followUpDelay = 500 * time.Millisecond

// shortBlocks returns how many blocks the last pass found short of their
// placement sets.
func (h *Healer) shortBlocks() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.short
}

// Pass runs one heal pass.
func (h *Healer) Pass(ctx context.Context) (err error) {
	h.setRunning(true)
	defer func() { h.finish(err) }()
	start := time.Now()

	members := h.cfg.Members()
	roots := h.cfg.Roots()
	if err := h.track(ctx, roots); err != nil {
		return err
	}
	want, local, err := collect(ctx, h.cfg.Maps, roots)
	if err != nil {
		return fmt.Errorf("heal: walk roots: %w", err)
	}
	obs, err := h.gather(ctx, members, want, local)
	if err != nil {
		return err
	}
	p := decide(obs, h.cfg.Self)
	for _, b := range p.counted {
		h.cfg.Redundancy.Observe(b.c, b.holders, obs.asked)
	}
	h.mu.Lock()
	h.status.Pending = int64(len(p.fetch))
	h.short = p.short
	h.mu.Unlock()
	if err := h.findSources(ctx, members, p); err != nil {
		return err
	}
	fetchStart := time.Now()
	h.mu.Lock()
	copiedBefore := h.status.CopiedBytes
	h.mu.Unlock()
	fetchErr := h.fetchAll(ctx, p)
	h.mu.Lock()
	if h.status.CopiedBytes > copiedBefore {
		h.status.FetchSeconds += time.Since(fetchStart).Seconds()
	}
	h.mu.Unlock()
	for _, c := range p.drop {
		if err := h.cfg.Store.Delete(ctx, c); err != nil {
			return fmt.Errorf("heal: drop surplus %s: %w", c, err)
		}
		h.mu.Lock()
		h.status.DroppedBlocks++
		h.mu.Unlock()
	}
	h.log.Debug("heal pass", "members", len(members), "blocks", len(want), "fetch", len(p.fetch),
		"short", p.short, "took", time.Since(start), "err", fetchErr)
	return fetchErr
}

// track brings the redundancy account to the catalog's roots: it forgets
// those the catalog dropped and walks the new ones, whose blocks count as
// under-replicated until this pass's answers confirm them.
func (h *Healer) track(ctx context.Context, roots []Root) error {
	keep := make([]cid.Cid, 0, len(roots))
	for _, r := range roots {
		keep = append(keep, r.Root)
	}
	h.cfg.Redundancy.Retain(keep)
	for _, r := range roots {
		if err := h.cfg.Redundancy.Track(ctx, r.Root); err != nil {
			return fmt.Errorf("heal: %w", err)
		}
	}
	return nil
}

// findSources asks every other live member for the blocks no member of
// their placement set holds: after a loss the surviving copies may sit
// outside the new set (an old holder, the owner's cache).
func (h *Healer) findSources(ctx context.Context, members []placement.Member, p *plan) error {
	var orphans []cid.Cid
	for _, c := range p.fetch {
		if len(p.sources[c]) == 0 {
			orphans = append(orphans, c)
		}
	}
	if len(orphans) == 0 {
		return nil
	}
	asks := map[string][]cid.Cid{}
	for _, m := range members {
		if m.ID != h.cfg.Self {
			asks[m.ID] = orphans
		}
	}
	askAll(ctx, h.cfg.Peers, h.log, asks, func(peer string, i int) {
		p.sources[orphans[i]] = append(p.sources[orphans[i]], peer)
	})
	return ctx.Err()
}

// askLimit bounds the who-has queries in flight at once.
const askLimit = 8

// askAll asks every peer of asks, askLimit at a time, which of its CIDs it
// holds, and calls found(peer, i) for each asks[peer][i] it holds; found
// runs for one peer at a time. A peer that fails to answer is skipped:
// asking members one after another let one slow member hold up the pass.
func askAll(ctx context.Context, peers Peers, log *slog.Logger, asks map[string][]cid.Cid, found func(peer string, i int)) {
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(askLimit)
	for peer, cids := range asks {
		g.Go(func() error {
			has, err := askHas(gctx, peers, peer, cids)
			if err != nil {
				log.Debug("heal: has query failed", "peer", peer, "err", err)
				return nil
			}
			mu.Lock()
			defer mu.Unlock()
			for i, ok := range has {
				if ok {
					found(peer, i)
				}
			}
			return nil
		})
	}
	_ = g.Wait() // the queries return no errors: a failed one is skipped
}

// fetchAll copies the planned blocks here in batches grouped by source,
// Concurrency batches at a time, within the bandwidth cap.
func (h *Healer) fetchAll(ctx context.Context, p *plan) error {
	bySource := map[string][]cid.Cid{}
	var lost int
	for _, c := range p.fetch {
		src := p.sources[c]
		if len(src) == 0 {
			lost++
			continue
		}
		// Spread the load: the block's own CID picks among its holders.
		pick := src[int(c.Hash()[len(c.Hash())-1])%len(src)]
		bySource[pick] = append(bySource[pick], c)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(h.cfg.Concurrency)
	var mu sync.Mutex
	var errs []error
	per := h.batchBlocks()
	for peer, cids := range bySource {
		for start := 0; start < len(cids); start += per {
			batch := cids[start:min(start+per, len(cids))]
			g.Go(func() error {
				err := h.fetchBatch(gctx, peer, batch, p)
				if errors.Is(err, blockstore.ErrNoSpace) {
					return err // no other batch fits either
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
				return gctx.Err()
			})
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if lost > 0 {
		errs = append(errs, fmt.Errorf("heal: %d blocks have no reachable copy", lost))
	}
	return errors.Join(errs...)
}

// fetchBatch copies batch from peer, falling back to the blocks' other
// holders for what peer fails to give. Each response is stored while it
// sits in the exchange's reused frame buffer, and counts once stored: a
// request that fails halfway keeps what came before the failure.
func (h *Healer) fetchBatch(ctx context.Context, peer string, batch []cid.Cid, p *plan) error {
	if h.cfg.Room != nil {
		// Asked for one response's worth, not the batch's: the store's
		// own check refuses each response that does not fit, so asking for
		// the whole batch (a GiB at 4 MiB blocks) would refuse copies long
		// before the node is short of space.
		if err := h.cfg.Room(min(int64(len(batch))*h.meanBlockBytes(), exchange.MaxGetPayload)); err != nil {
			return fmt.Errorf("heal: %w", err)
		}
	}
	missing := batch
	tried := map[string]bool{}
	for len(missing) > 0 {
		tried[peer] = true
		// The cap is charged before the bytes cross the wire, for the
		// expected size, and settled once they are here.
		expect := h.expectBytes(len(missing))
		if err := h.waitBytes(ctx, expect); err != nil {
			return err
		}
		got := make(map[cid.Cid]bool, len(missing))
		var bytes int
		var storeErr error
		err := h.cfg.Peers.GetEach(ctx, peer, missing, func(blocks []blockstore.Block) error {
			if err := h.cfg.Store.PutMany(ctx, blocks); err != nil {
				storeErr = fmt.Errorf("heal: store copies: %w", err)
				return storeErr
			}
			fetched := make([]cid.Cid, len(blocks))
			n := 0
			for i, b := range blocks {
				fetched[i] = b.CID
				got[b.CID] = true
				n += len(b.Data)
			}
			bytes += n
			h.cfg.Redundancy.Confirm(h.cfg.Self, fetched)
			h.mu.Lock()
			h.status.CopiedBlocks += int64(len(blocks))
			h.status.CopiedBytes += int64(n)
			h.status.Pending -= int64(len(blocks))
			h.mu.Unlock()
			return nil
		})
		if storeErr != nil {
			return storeErr
		}
		if err != nil {
			h.log.Debug("heal: fetch failed", "peer", peer, "err", err)
		}
		if err := h.waitBytes(ctx, bytes-expect); err != nil {
			return err
		}
		var rest []cid.Cid
		for _, c := range missing {
			if !got[c] {
				rest = append(rest, c)
			}
		}
		missing = rest
		if len(missing) == 0 {
			return nil
		}
		peer = ""
		for _, src := range p.sources[missing[0]] {
			if !tried[src] {
				peer = src
				break
			}
		}
		if peer == "" {
			return fmt.Errorf("heal: %d blocks could not be fetched (first %s)", len(missing), missing[0])
		}
	}
	return nil
}

func (h *Healer) setRunning(on bool) {
	h.mu.Lock()
	h.status.Running = on
	h.mu.Unlock()
}

func (h *Healer) finish(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.status.Running = false
	h.status.Pending = 0
	if err != nil {
		h.status.LastError = err.Error()
		return
	}
	h.status.LastError = ""
	h.status.Passes++
	h.status.LastPass = time.Now()
}
