package clock

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Fake is a Clock that moves only when Advance or Set moves it, firing the
// timers and tickers that fall due on the way. It is safe for concurrent
// use.
//
// Like the real ones, its channels hold one value and never block the
// clock: a ticker whose reader has not taken the last tick drops the
// ticks that fall due meanwhile. Advance is instant, so a ticker passed
// over several periods in one Advance ticks once, at the first; a test
// that wants each tick advances one period at a time and reads in
// between.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*waiter     // pending timers and running tickers
	seq     uint64        // creation order, to fire waiters due at once in it
	changed chan struct{} // closed and replaced when waiters changes
}

// waiter is one pending After or one running ticker.
type waiter struct {
	at     time.Time
	period time.Duration // 0: an After, removed once fired
	seq    uint64
	c      chan time.Time
}

// NewFake returns a Fake reading t.
func NewFake(t time.Time) *Fake {
	return &Fake{now: t, changed: make(chan struct{})}
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// After delivers the fake time once the clock has moved d past now; at
// once if d <= 0, as time.After does.
func (f *Fake) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := make(chan time.Time, 1)
	if d <= 0 {
		c <- f.now
		return c
	}
	f.add(&waiter{at: f.now.Add(d), c: c})
	return c
}

// NewTicker returns a ticker that ticks each time the clock passes a
// multiple of d after now. Like time.NewTicker it panics if d <= 0.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive interval for NewTicker")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	w := &waiter{at: f.now.Add(d), period: d, c: make(chan time.Time, 1)}
	f.add(w)
	return &fakeTicker{f: f, w: w}
}

// Advance moves the clock d forward, firing in time order every timer and
// ticker that falls due, each delivering its due time. It returns once
// all have fired; concurrent Advances take turns.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advanceTo(f.now.Add(d))
}

// Set moves the clock to t. A later t is an Advance; an earlier one turns
// the clock back without firing anything, and pending timers keep their
// due times.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.Before(f.now) {
		f.now = t
		return
	}
	f.advanceTo(t)
}

// Waiters returns how many timers are pending and tickers running: a test
// waits for the count its code reaches when blocked on the clock before
// it advances.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

// BlockUntil waits until at least n timers are pending or tickers running
// (see Waiters), or ctx ends.
func (f *Fake) BlockUntil(ctx context.Context, n int) error {
	for {
		f.mu.Lock()
		count, changed := len(f.waiters), f.changed
		f.mu.Unlock()
		if count >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// advanceTo fires what falls due up to target, in time order, and leaves
// the clock at target. f.mu is held.
func (f *Fake) advanceTo(target time.Time) {
	for {
		w := f.next(target)
		if w == nil {
			break
		}
		f.now = w.at
		select {
		case w.c <- w.at:
		default: // the reader has not taken the last value: drop this one
		}
		if w.period == 0 {
			f.remove(w)
			continue
		}
		w.at = w.at.Add(w.period)
		if !w.at.After(target) {
			// Advance is instant: the reader has had no time to take
			// this tick, so the ticks due meanwhile would be dropped.
			// Skip them rather than loop one period at a time.
			w.at = w.at.Add(target.Sub(w.at).Truncate(w.period) + w.period)
		}
	}
	f.now = target
}

// next returns the waiter due first at or before target, the earliest
// created among those due at once; nil if none is due. f.mu is held.
func (f *Fake) next(target time.Time) *waiter {
	var first *waiter
	for _, w := range f.waiters {
		if w.at.After(target) {
			continue
		}
		if first == nil || w.at.Before(first.at) || (w.at.Equal(first.at) && w.seq < first.seq) {
			first = w
		}
	}
	return first
}

// add registers w. f.mu is held.
func (f *Fake) add(w *waiter) {
	f.seq++
	w.seq = f.seq
	f.waiters = append(f.waiters, w)
	f.notify()
}

// remove unregisters w if registered. f.mu is held.
func (f *Fake) remove(w *waiter) {
	i := slices.Index(f.waiters, w)
	if i < 0 {
		return
	}
	f.waiters = slices.Delete(f.waiters, i, i+1)
	f.notify()
}

// notify wakes BlockUntil's callers. f.mu is held.
func (f *Fake) notify() {
	close(f.changed)
	f.changed = make(chan struct{})
}

type fakeTicker struct {
	f *Fake
	w *waiter
}

func (t *fakeTicker) C() <-chan time.Time { return t.w.c }

// Stop stops the ticks; a tick already delivered stays in C, as with
// time.Ticker. Stopping twice is harmless.
func (t *fakeTicker) Stop() {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	t.f.remove(t.w)
}
