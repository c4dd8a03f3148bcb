package transfer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/volume"
)

// keepEnded is how many ended transfers the registry keeps for listing.
const keepEnded = 100

// Job is one transfer of the registry, running or ended. Safe for
// concurrent use.
type Job struct {
	mu     sync.Mutex
	info   api.TransferInfo
	cancel context.CancelFunc
	done   chan struct{}
	// unreached: it failed only for want of peers that may come back (a
	// target unreachable or not serving transfers yet); set as it ends.
	unreached bool
}

// newID returns a random transfer ID.
func newID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// add registers a transfer and forgets the oldest ended ones beyond
// keepEnded.
func (s *Service) add(info api.TransferInfo, cancel context.CancelFunc) *Job {
	j := &Job{info: info, cancel: cancel, done: make(chan struct{})}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobs[info.ID] = j
	var ended []*Job
	for _, o := range s.jobs {
		if State(o.Info().State) != Running {
			ended = append(ended, o)
		}
	}
	if len(ended) > keepEnded {
		sort.Slice(ended, func(a, b int) bool { return ended[a].Info().Started.Before(ended[b].Info().Started) })
		for _, o := range ended[:len(ended)-keepEnded] {
			delete(s.jobs, o.Info().ID)
		}
	}
	return j
}

// Info returns the transfer as it stands now: a copy, targets and byte
// counts included, that later progress leaves alone.
func (j *Job) Info() api.TransferInfo {
	j.mu.Lock()
	defer j.mu.Unlock()
	info := j.info
	info.Targets = slices.Clone(info.Targets)
	info.BytesFrom = maps.Clone(info.BytesFrom)
	return info
}

// failedUnreached reports whether the transfer, ended, failed only for want
// of peers that may come back: trying it again later may succeed.
func (j *Job) failedUnreached() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return State(j.info.State) == Failed && j.unreached
}

// Done is closed when the transfer has ended.
func (j *Job) Done() <-chan struct{} { return j.done }

// Wait returns the transfer once it has ended, or ctx's error.
func (j *Job) Wait(ctx context.Context) (api.TransferInfo, error) {
	select {
	case <-j.done:
		return j.Info(), nil
	case <-ctx.Done():
		return api.TransferInfo{}, ctx.Err()
	}
}

func (j *Job) update(fn func(*api.TransferInfo)) {
	j.mu.Lock()
	fn(&j.info)
	j.mu.Unlock()
}

// List returns every transfer, newest first.
func (s *Service) List() []api.TransferInfo {
	s.mu.Lock()
	out := make([]api.TransferInfo, 0, len(s.jobs))
	for _, j := range s.jobs {
		out = append(out, j.Info())
	}
	s.mu.Unlock()
	sort.Slice(out, func(a, b int) bool { return out[a].Started.After(out[b].Started) })
	return out
}

// Get returns the transfer with the given ID.
func (s *Service) Get(id string) (*Job, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	return j, ok
}

// Cancel stops a running transfer; it returns at once (wait on the Job's
// Done for its end).
func (s *Service) Cancel(id string) error {
	j, ok := s.Get(id)
	if !ok {
		return fmt.Errorf("transfer %q: %w", id, volume.ErrNotFound)
	}
	j.cancel()
	return nil
}
