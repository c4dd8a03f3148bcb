package transfer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"sync"
	"time"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/internal/clock"
	"github.com/weft-mesh/weft/internal/jsonfile"
)

// resumeFor bounds how long a restarted daemon keeps trying to resume a
// transfer it had running (its target or source may take a while to come
// back too).
const resumeFor = 10 * time.Minute

// resumeRetry is how often a journaled transfer that could not start is
// tried again.
const resumeRetry = 2 * time.Second

// journal holds the pushes and pulls an operator started until they end,
// in DIR/transfers.json, so that a daemon stopped or killed in the middle
// of one resumes it when it starts again, under the same ID, from what
// already arrived (see partialRoots). A journal without a path keeps
// them in memory only.
type journal struct {
	path  string
	clock clock.Clock

	mu      sync.Mutex
	closing bool // shutting down: transfers cut short now stay journaled
	entries map[string]journalEntry
}

type journalEntry struct {
	ID      string              `json:"id"`
	Request api.TransferRequest `json:"request"`
	Started time.Time           `json:"started"`
}

func loadJournal(path string, clk clock.Clock) (*journal, error) {
	j := &journal{path: path, clock: clk, entries: map[string]journalEntry{}}
	if path == "" {
		return j, nil
	}
	if err := jsonfile.Load(path, &j.entries); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("load transfer journal: %w", err)
	}
	// An entry filed under another ID than its own could never be
	// forgotten (done deletes by ID), so it would resume at every start.
	for id, e := range j.entries {
		if id == "" || e.ID != id {
			delete(j.entries, id)
		}
	}
	if j.entries == nil { // a file that says null
		j.entries = map[string]journalEntry{}
	}
	return j, nil
}

// add records a transfer that just started.
func (j *journal) add(id string, req api.TransferRequest) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, ok := j.entries[id]; !ok {
		j.entries[id] = journalEntry{ID: id, Request: req, Started: j.clock.Now().UTC()}
	}
	return j.saveLocked()
}

// done forgets a transfer that ended (done, failed or cancelled), unless
// it ended because the daemon is stopping.
func (j *journal) done(id string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, ok := j.entries[id]; !ok || j.closing {
		return nil
	}
	delete(j.entries, id)
	return j.saveLocked()
}

// close stops forgetting: what runs now is cut short by the shutdown and
// resumes at the next start.
func (j *journal) close() {
	j.mu.Lock()
	j.closing = true
	j.mu.Unlock()
}

// pending returns the journaled transfers, oldest first.
func (j *journal) pending() []journalEntry {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]journalEntry, 0, len(j.entries))
	for _, e := range j.entries {
		out = append(out, e)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Started.Before(out[b].Started) })
	return out
}

func (j *journal) saveLocked() error {
	if j.path == "" {
		return nil
	}
	if err := jsonfile.Save(j.path, j.entries, 0o600); err != nil {
		return fmt.Errorf("save transfer journal: %w", err)
	}
	return nil
}

// startJournaled starts a push or pull under id and keeps it in the
// journal until it ends.
func (s *Service) startJournaled(ctx context.Context, id string, req api.TransferRequest) (*Job, error) {
	job, err := s.start(ctx, id, req)
	if err != nil {
		return nil, err
	}
	if err := s.journal.add(id, req); err != nil {
		s.log.Warn("transfer not journaled: it will not resume after a restart", "id", id, "err", err)
	}
	go func() {
		<-job.done
		if err := s.journal.done(id); err != nil {
			s.log.Warn("forget an ended transfer", "id", id, "err", err)
		}
	}()
	return job, nil
}

// resume restarts the transfers the journal holds: those this daemon
// was running when it stopped. Each is retried until its source and
// targets are reachable, for up to resumeFor: while it cannot start, and
// when it fails only for want of a target that is not back yet (a
// restarted target may be alive before it serves transfers).
func (s *Service) resume(ctx context.Context) {
	var wg sync.WaitGroup
	for _, e := range s.journal.pending() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.resumeOne(ctx, e)
		}()
	}
	wg.Wait()
}

// resumeOne runs the journaled transfer e again until it ends for good,
// ctx ends (it stays journaled) or resumeFor has passed (it is forgotten).
func (s *Service) resumeOne(ctx context.Context, e journalEntry) {
	deadline := s.clock.Now().Add(resumeFor)
	for {
		err := s.resumeOnce(ctx, e)
		if err == nil || ctx.Err() != nil {
			return
		}
		if s.clock.Now().After(deadline) {
			s.log.Warn("transfer not resumed: giving up", "id", e.ID, "source", e.Request.Source, "err", err)
			if err := s.journal.done(e.ID); err != nil {
				s.log.Warn("forget a transfer", "id", e.ID, "err", err)
			}
			return
		}
		s.log.Info("transfer not resumed yet: retrying", "id", e.ID, "source", e.Request.Source, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-s.clock.After(resumeRetry):
		}
	}
}

// resumeOnce starts e and waits for its end. It forgets e once it ended
// (done, cancelled or failed for good); it returns an error, e still
// journaled, when e could not start, failed only for want of peers that
// may come back (Job.failedUnreached), or ctx ended first.
func (s *Service) resumeOnce(ctx context.Context, e journalEntry) error {
	job, err := s.start(ctx, e.ID, e.Request)
	if err != nil {
		return err
	}
	s.log.Info("transfer resumed after a restart", "id", e.ID, "source", e.Request.Source)
	info, err := job.Wait(ctx)
	if err != nil {
		return err
	}
	if job.failedUnreached() {
		return fmt.Errorf("transfer %s: %s", e.ID, info.Error)
	}
	if err := s.journal.done(e.ID); err != nil {
		s.log.Warn("forget an ended transfer", "id", e.ID, "err", err)
	}
	return nil
}
