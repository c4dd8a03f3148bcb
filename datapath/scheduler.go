package datapath

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"
)

// linkBurst is how much unused link budget the Scheduler saves up: enough
// to smooth request sizes, small enough that any window of a few seconds
// stays within the budget.
const linkBurst = 250 * time.Millisecond

// Scheduler admits the requests of every transfer on a node. It is shared
// by all of them and safe for concurrent use.
//
// Requests are granted in weighted-fair order on bytes (start-time fair
// queueing): each transfer's requests carry tags that advance by
// bytes/weight, and the waiting request with the lowest tag goes next, so
// transfers competing for the link get shares proportional to their
// Priority. With a link budget, grants are paced to it; without one they
// go out as soon as they are asked, in the same order.
type Scheduler struct {
	link float64 // bytes/s; 0 means unlimited

	mu       sync.Mutex
	tokens   float64 // link budget in hand; negative is the debt of the last grant
	refilled time.Time
	vtime    float64 // virtual time: the start tag of the last grant
	waiting  []*request
	pacing   bool // a pace goroutine runs while requests wait
}

// flow is one transfer's standing in a Scheduler.
type flow struct {
	weight float64
	finish float64 // tag of the flow's last request
}

type request struct {
	flow       *flow
	bytes      float64
	start, tag float64
	granted    chan struct{}
}

// NewScheduler returns a scheduler for a node whose transfers may move
// linkBytesPerSec in total; 0 (or any value that is not a positive finite
// number) means unlimited.
func NewScheduler(linkBytesPerSec float64) *Scheduler {
	s := &Scheduler{}
	if linkBytesPerSec > 0 && !math.IsInf(linkBytesPerSec, 0) {
		s.link = linkBytesPerSec
	}
	return s
}

func (s *Scheduler) join(p Priority) *flow {
	return &flow{weight: float64(p)}
}

// admit blocks until the scheduler lets f send a request expected to move
// bytes, or ctx ends.
func (s *Scheduler) admit(ctx context.Context, f *flow, bytes int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	r := &request{flow: f, bytes: float64(bytes), granted: make(chan struct{})}
	r.start = max(f.finish, s.vtime)
	r.tag = r.start + r.bytes/f.weight
	f.finish = r.tag
	if len(s.waiting) == 0 && s.wait(time.Now()) == 0 {
		s.grant(r)
		s.mu.Unlock()
		return nil
	}
	s.waiting = append(s.waiting, r)
	if !s.pacing {
		s.pacing = true
		go s.pace()
	}
	s.mu.Unlock()

	select {
	case <-r.granted:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		if i := slices.Index(s.waiting, r); i >= 0 {
			s.waiting = slices.Delete(s.waiting, i, i+1)
		}
		return ctx.Err()
	}
}

// charge accounts bytes f moved beyond what it was admitted for.
func (s *Scheduler) charge(f *flow, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.finish += float64(bytes) / f.weight
	if s.link > 0 {
		s.wait(time.Now())
		s.tokens -= float64(bytes)
	}
}

// pace grants waiting requests, lowest tag first, as the link budget
// allows, and returns when none is left.
func (s *Scheduler) pace() {
	for {
		s.mu.Lock()
		if len(s.waiting) == 0 {
			s.pacing = false
			s.mu.Unlock()
			return
		}
		if d := s.wait(time.Now()); d > 0 {
			s.mu.Unlock()
			// Re-pick after the wait: a request with a lower tag may
			// have come in meanwhile.
			time.Sleep(d)
			continue
		}
		i := 0
		for j, r := range s.waiting {
			if r.tag < s.waiting[i].tag {
				i = j
			}
		}
		r := s.waiting[i]
		s.waiting = slices.Delete(s.waiting, i, i+1)
		s.grant(r)
		s.mu.Unlock()
	}
}

// grant lets r go. s.mu must be held.
func (s *Scheduler) grant(r *request) {
	s.vtime = max(s.vtime, r.start)
	if s.link > 0 {
		s.tokens -= r.bytes
	}
	close(r.granted)
}

// wait refills the link budget to now and returns how long until it is
// out of debt: a grant may overdraw it, which the next ones wait off.
// s.mu must be held.
func (s *Scheduler) wait(now time.Time) time.Duration {
	if s.link == 0 {
		return 0
	}
	burst := s.link * linkBurst.Seconds()
	if s.refilled.IsZero() {
		s.tokens = burst
	} else {
		s.tokens = min(burst, s.tokens+now.Sub(s.refilled).Seconds()*s.link)
	}
	s.refilled = now
	if s.tokens >= 0 {
		return 0
	}
	return time.Duration(-s.tokens / s.link * float64(time.Second))
}
