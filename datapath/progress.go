package datapath

import (
	"maps"
	"math"
	"slices"
	"sync"
	"time"
)

// Transfer states, as in Progress.State.
const (
	StateRunning   = "running"
	StateDone      = "done"
	StateFailed    = "failed"
	StateCancelled = "cancelled"
)

// Progress is a snapshot of a transfer. The JSON field names are part of
// the CLI contract. Byte and block counts are of data blocks; the map
// nodes walked on the way are a fraction of a percent and not counted.
type Progress struct {
	ID    string `json:"id"`
	State string `json:"state"` // running, done, failed or cancelled

	TotalBlocks int64 `json:"total_blocks"` // distinct data blocks under the root, as far as walked
	DoneBlocks  int64 `json:"done_blocks"`  // fetched and stored by this run
	// SkippedBlocks were already held here before the transfer.
	SkippedBlocks int64 `json:"skipped_blocks"`

	// TotalBytes is the bytes to move: those moved plus the blocks still
	// missing counted at the disk block size.
	TotalBytes int64         `json:"total_bytes"`
	DoneBytes  int64         `json:"done_bytes"`
	Rate       float64       `json:"rate"` // bytes/s, smoothed over a few seconds
	ETA        time.Duration `json:"eta"`  // nanoseconds; 0 when unknown or finished

	BytesFrom    map[string]int64 `json:"bytes_from"`    // data bytes received from each peer
	DroppedPeers []string         `json:"dropped_peers"` // peers dropped for sending bad blocks

	Error   string    `json:"error,omitempty"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended,omitzero"`
}

// rateWindow is the time constant of the smoothed rate.
const rateWindow = 3 * time.Second

// tracker accumulates a transfer's progress. Safe for concurrent use.
type tracker struct {
	mu            sync.Mutex
	p             Progress
	diskBlockSize int64
	// decayed is the sum of the bytes received, each decayed by
	// exp(-age/rateWindow), as of decayedAt.
	decayed   float64
	decayedAt time.Time
}

func newTracker(id string, diskBlockSize int64, now time.Time) *tracker {
	return &tracker{
		p:             Progress{ID: id, State: StateRunning, BytesFrom: map[string]int64{}, Started: now},
		diskBlockSize: diskBlockSize,
		decayedAt:     now,
	}
}

// found records data blocks discovered by the walk.
func (t *tracker) found(total, skipped int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.p.TotalBlocks += total
	t.p.SkippedBlocks += skipped
}

// received records blocks fetched from peer and stored.
func (t *tracker) received(peer string, blocks int, bytes int64, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.p.DoneBlocks += int64(blocks)
	t.p.DoneBytes += bytes
	t.p.BytesFrom[peer] += bytes
	t.decayed = t.decayedTo(now) + float64(bytes)
	t.decayedAt = now
}

func (t *tracker) dropped(peer string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.p.DroppedPeers = append(t.p.DroppedPeers, peer)
}

// finish ends the transfer in state with err (nil when done).
func (t *tracker) finish(state string, err error, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.p.State = state
	if err != nil {
		t.p.Error = err.Error()
	}
	t.p.Ended = now
}

func (t *tracker) decayedTo(now time.Time) float64 {
	age := now.Sub(t.decayedAt)
	return t.decayed * math.Exp(-age.Seconds()/rateWindow.Seconds())
}

// snapshot returns the progress as of now (the end, once ended).
func (t *tracker) snapshot(now time.Time) Progress {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.p
	p.BytesFrom = maps.Clone(t.p.BytesFrom)
	p.DroppedPeers = slices.Clone(t.p.DroppedPeers)
	if !p.Ended.IsZero() {
		now = p.Ended
	}
	remaining := max(0, p.TotalBlocks-p.SkippedBlocks-p.DoneBlocks) * t.diskBlockSize
	p.TotalBytes = p.DoneBytes + remaining
	// The decayed sum of a steady stream of R bytes/s that began T ago is
	// R*w*(1-exp(-T/w)); dividing by that factor makes the rate right
	// from the first second instead of ramping up over the window.
	w := rateWindow.Seconds()
	if elapsed := now.Sub(p.Started).Seconds(); elapsed > 0 {
		p.Rate = t.decayedTo(now) / (w * (1 - math.Exp(-elapsed/w)))
	}
	if p.State == StateRunning && p.Rate > 0 && remaining > 0 {
		p.ETA = time.Duration(float64(remaining) / p.Rate * float64(time.Second))
	}
	return p
}
