package datapath

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"golang.org/x/sync/errgroup"
)

// Transfer is one running pull of a root. Its methods are safe for
// concurrent use.
type Transfer struct {
	spec   Spec
	track  *tracker
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done closes
}

// Start begins pulling spec.Root into store from spec.Sources through
// peers, in the background, and returns at once. Every request is admitted
// by sched, shared by the node's transfers; nil gives the transfer a
// scheduler of its own without a link budget. The transfer ends when the
// root is complete here, it fails, ctx ends or Cancel is called. An
// invalid spec gives a transfer that has already failed.
func Start(ctx context.Context, spec Spec, peers Peers, store Store, sched *Scheduler) *Transfer {
	spec = spec.withDefaults()
	t := &Transfer{spec: spec, track: newTracker(spec.ID, spec.DiskBlockSize, time.Now()), done: make(chan struct{})}
	ctx, t.cancel = context.WithCancel(ctx)
	err := spec.check()
	if err == nil && (peers == nil || store == nil) {
		err = fmt.Errorf("transfer %q: no peers or no store", spec.ID)
	}
	if err != nil {
		t.end(ctx, err)
		return t
	}
	if sched == nil {
		sched = NewScheduler(0)
	}
	log := spec.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &fetcher{
		sources:    slices.Clone(spec.Sources),
		peers:      peers,
		store:      store,
		sched:      sched,
		flow:       sched.join(spec.Priority),
		limit:      newLimiter(spec.BWLimit),
		track:      t.track,
		log:        log.With("component", "datapath", "transfer", spec.ID),
		thresholds: spec.Thresholds,
		dropped:    make(map[string]bool),
		failed:     make(map[string]time.Time),
	}
	go func() { t.end(ctx, t.run(ctx, f)) }()
	return t
}

// run walks the map and fetches what is missing.
func (t *Transfer) run(ctx context.Context, f *fetcher) error {
	missing, ordinals, err := f.diff(ctx, t.spec.Root)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		return fmt.Errorf("transfer %q: walk map %s: %w", t.spec.ID, t.spec.Root, err)
	}
	// A swarm of one (a push to a single target) has no one to share
	// with: its blocks all come from the origin, in full-size requests
	// rather than the swarm's small origin requests, which cost the
	// receiver a synced store batch per 64 KiB.
	switch {
	case t.spec.Crowd != nil:
		f.log.Debug("walked map", "missing", len(missing), "crowd", true)
		err = newCrowd(f, t.spec, missing, ordinals).run(ctx)
	case len(t.spec.Swarm) > 1:
		f.log.Debug("walked map", "missing", len(missing), "swarm", len(t.spec.Swarm))
		err = newSwarm(f, t.spec, missing, ordinals).run(ctx)
	default:
		err = t.fetchBatches(ctx, f, missing)
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		return fmt.Errorf("transfer %q: %w", t.spec.ID, err)
	}
	return nil
}

// fetchBatches fetches missing in batches, Concurrency at a time, each
// from the sources that hold it.
func (t *Transfer) fetchBatches(ctx context.Context, f *fetcher, missing []cid.Cid) error {
	batches := slices.Collect(slices.Chunk(rotate(missing, t.spec.ID), t.spec.batchBlocks()))
	f.log.Debug("walked map", "missing", len(missing), "batches", len(batches))
	g, gctx := errgroup.WithContext(ctx)
	var next atomic.Int64
	for range min(t.spec.Concurrency, len(batches)) {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(batches) {
					return nil
				}
				if err := f.fetchData(gctx, i, batches[i], t.spec.DiskBlockSize); err != nil {
					return err
				}
			}
		})
	}
	return g.Wait()
}

// rotate returns missing starting at an offset derived from id, so that
// transfers of the same root fetch different blocks first.
func rotate(missing []cid.Cid, id string) []cid.Cid {
	if len(missing) == 0 {
		return missing
	}
	h := fnv.New64a()
	h.Write([]byte(id))
	off := int(h.Sum64() % uint64(len(missing)))
	return append(slices.Clone(missing[off:]), missing[:off]...)
}

// end records how the run ended.
func (t *Transfer) end(ctx context.Context, err error) {
	state := StateDone
	switch {
	case err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()):
		state = StateCancelled
	case err != nil:
		state = StateFailed
	}
	t.err = err
	t.track.finish(state, err, time.Now())
	t.cancel()
	close(t.done)
}

// Progress returns a snapshot of the transfer's progress.
func (t *Transfer) Progress() Progress {
	return t.track.snapshot(time.Now())
}

// Wait blocks until the transfer ends or ctx does, and returns its final
// progress and nil if the root is complete here; the error it ended with
// (the context's error if cancelled); or the progress so far and ctx's
// error if ctx ended first.
func (t *Transfer) Wait(ctx context.Context) (Progress, error) {
	select {
	case <-t.done:
		return t.Progress(), t.err
	case <-ctx.Done():
		return t.Progress(), ctx.Err()
	}
}

// Cancel stops the transfer; it ends promptly in state cancelled, keeping
// what arrived for a later run to skip. It does not wait for the end.
func (t *Transfer) Cancel() {
	t.cancel()
}
