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
	// Bandwidth caps the bytes per second heal copies; 0 means no cap.
	Bandwidth float64
	// Concurrency bounds the fetches in flight (default 4).
	Concurrency int
	// Interval is the time between passes when nothing triggers one
	// (default 30s).
	Interval time.Duration
	Logger   *slog.Logger
}

// fetchBatch bounds the blocks asked for in one Get.
const fetchBatch = 256

// Status says what heal is doing and has done. Field names are part of the
// CLI's JSON contract.
type Status struct {
	Running bool  `json:"running"`
	Passes  int64 `json:"passes"`
	// LastPass is when the last complete pass ended.
	LastPass time.Time `json:"last_pass"`
	// UnderReplicated counts the blocks, among those this node holds or
	// should hold, with fewer than R copies in their placement set at the
	// last pass.
	UnderReplicated int64 `json:"under_replicated"`
	// UnderByRoot splits UnderReplicated by root CID.
	UnderByRoot map[string]int64 `json:"under_by_root,omitempty"`
	// Pending is what the running pass still has to copy here.
	Pending      int64 `json:"pending_blocks"`
	CopiedBlocks int64 `json:"copied_blocks"`
	CopiedBytes  int64 `json:"copied_bytes"`
	// DroppedBlocks are surplus copies removed after their placement set
	// confirmed them.
	DroppedBlocks int64  `json:"dropped_blocks"`
	LastError     string `json:"last_error,omitempty"`
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
	s := h.status
	s.UnderByRoot = make(map[string]int64, len(h.status.UnderByRoot))
	for k, v := range h.status.UnderByRoot {
		s.UnderByRoot[k] = v
	}
	return s
}

// Run runs passes until ctx ends. A trigger that arrives during a pass
// starts another right after it, so no change is missed.
func (h *Healer) Run(ctx context.Context) {
	t := time.NewTicker(h.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-h.trigger:
		}
		if err := h.Pass(ctx); err != nil && ctx.Err() == nil {
			h.log.Warn("heal pass failed", "err", err)
		}
	}
}

// plan is what one pass decided.
type plan struct {
	fetch   []cid.Cid            // blocks to copy here
	sources map[cid.Cid][]string // peers known to hold them
	drop    []cid.Cid            // surplus copies to remove
	under   map[cid.Cid]bool
	// missing is, for each under-replicated block this node fetches, the
	// copies it still lacks: a fetch makes one of them.
	missing map[cid.Cid]int

	mu      sync.Mutex
	fetched []cid.Cid
}

// Pass runs one heal pass.
func (h *Healer) Pass(ctx context.Context) (err error) {
	h.setRunning(true)
	defer func() { h.finish(err) }()

	members := h.cfg.Members()
	roots := h.cfg.Roots()
	want, local, err := collect(ctx, h.cfg.Maps, roots)
	if err != nil {
		return fmt.Errorf("heal: walk roots: %w", err)
	}
	p, err := h.plan(ctx, members, want, local)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.status.Pending = int64(len(p.fetch))
	h.mu.Unlock()
	if err := h.findSources(ctx, members, p); err != nil {
		return err
	}
	fetchErr := h.fetchAll(ctx, p)
	for _, c := range p.fetched {
		if p.missing[c] <= 1 {
			delete(p.under, c)
		}
	}
	for _, c := range p.drop {
		if err := h.cfg.Store.Delete(ctx, c); err != nil {
			return fmt.Errorf("heal: drop surplus %s: %w", c, err)
		}
		h.mu.Lock()
		h.status.DroppedBlocks++
		h.mu.Unlock()
	}
	byRoot, err := h.underByRoot(ctx, roots, p.under)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.status.UnderReplicated = int64(len(p.under))
	h.status.UnderByRoot = byRoot
	h.mu.Unlock()
	return fetchErr
}

// plan asks the placement sets of the blocks this node holds or should
// hold who has them, and decides what to copy and what to drop.
func (h *Healer) plan(ctx context.Context, members []placement.Member, want map[cid.Cid]int, local map[cid.Cid]bool) (*plan, error) {
	type item struct {
		c       cid.Cid
		set     []placement.Member
		r       int
		here    bool
		holders []string
	}
	var items []*item
	ask := map[string][]*item{}
	for c, r := range want {
		set := placement.Place(c.Hash(), members, r)
		mine := contains(set, h.cfg.Self)
		here, err := h.cfg.Store.Has(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("heal: %w", err)
		}
		if !mine && !here {
			continue // another node's business
		}
		it := &item{c: c, set: set, r: r, here: here}
		items = append(items, it)
		for _, m := range set {
			if m.ID != h.cfg.Self {
				ask[m.ID] = append(ask[m.ID], it)
			}
		}
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for peer, its := range ask {
		g.Go(func() error {
			cids := make([]cid.Cid, len(its))
			for i, it := range its {
				cids[i] = it.c
			}
			has, err := askHas(gctx, h.cfg.Peers, peer, cids)
			if err != nil {
				// An unreachable member holds nothing as far as this
				// pass knows: nothing is dropped on its behalf.
				h.log.Debug("heal: has query failed", "peer", peer, "err", err)
				return nil
			}
			mu.Lock()
			defer mu.Unlock()
			for i, ok := range has {
				if ok {
					its[i].holders = append(its[i].holders, peer)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	p := &plan{sources: map[cid.Cid][]string{}, under: map[cid.Cid]bool{}, missing: map[cid.Cid]int{}}
	for _, it := range items {
		mine := contains(it.set, h.cfg.Self)
		copies := len(it.holders)
		if mine && it.here {
			copies++
		}
		if copies < it.r {
			p.under[it.c] = true
			p.missing[it.c] = it.r - copies
		}
		switch {
		case mine && !it.here:
			p.fetch = append(p.fetch, it.c)
			p.sources[it.c] = it.holders
		case !mine && it.here && !local[it.c] && it.c.Type() == blockstore.CodecRaw &&
			len(it.set) == it.r && len(it.holders) == it.r:
			// Surplus: every member of the full placement set confirmed
			// its copy. Map nodes stay everywhere: every node walks them.
			p.drop = append(p.drop, it.c)
		}
	}
	return p, nil
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
	for _, m := range members {
		if m.ID == h.cfg.Self {
			continue
		}
		has, err := askHas(ctx, h.cfg.Peers, m.ID, orphans)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue
		}
		for i, ok := range has {
			if ok {
				p.sources[orphans[i]] = append(p.sources[orphans[i]], m.ID)
			}
		}
	}
	return nil
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
	for peer, cids := range bySource {
		for start := 0; start < len(cids); start += fetchBatch {
			batch := cids[start:min(start+fetchBatch, len(cids))]
			g.Go(func() error {
				if err := h.fetchBatch(gctx, peer, batch, p); err != nil {
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
// holders for what peer fails to give.
func (h *Healer) fetchBatch(ctx context.Context, peer string, batch []cid.Cid, p *plan) error {
	missing := batch
	tried := map[string]bool{}
	for len(missing) > 0 {
		tried[peer] = true
		got, err := h.cfg.Peers.Get(ctx, peer, missing)
		if err != nil {
			h.log.Debug("heal: fetch failed", "peer", peer, "err", err)
			got = nil
		}
		var blocks []blockstore.Block
		var bytes int
		var rest []cid.Cid
		for _, c := range missing {
			if b, ok := got[c]; ok {
				blocks = append(blocks, b)
				bytes += len(b.Data)
			} else {
				rest = append(rest, c)
			}
		}
		if len(blocks) > 0 {
			if err := h.waitBytes(ctx, bytes); err != nil {
				return err
			}
			if err := h.cfg.Store.PutMany(ctx, blocks); err != nil {
				return fmt.Errorf("heal: store copies: %w", err)
			}
			p.mu.Lock()
			for _, b := range blocks {
				p.fetched = append(p.fetched, b.CID)
			}
			p.mu.Unlock()
			h.mu.Lock()
			h.status.CopiedBlocks += int64(len(blocks))
			h.status.CopiedBytes += int64(bytes)
			h.status.Pending -= int64(len(blocks))
			h.mu.Unlock()
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

// underByRoot counts the under-replicated blocks reachable from each root.
func (h *Healer) underByRoot(ctx context.Context, roots []Root, under map[cid.Cid]bool) (map[string]int64, error) {
	out := map[string]int64{}
	if len(under) == 0 {
		return out, nil
	}
	for _, r := range roots {
		if !r.Root.Defined() {
			continue
		}
		seen := map[cid.Cid]bool{}
		var n int64
		err := h.cfg.Maps.Mark(ctx, r.Root, func(c cid.Cid) bool {
			if seen[c] {
				return false
			}
			seen[c] = true
			if under[c] {
				n++
			}
			return true
		})
		if err != nil {
			return nil, fmt.Errorf("heal: count %s: %w", r.Root, err)
		}
		if n > 0 {
			out[r.Root.String()] = n
		}
	}
	return out, nil
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
