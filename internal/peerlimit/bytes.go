package peerlimit

import (
	"context"
	"fmt"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// Bytes bounds the bytes a node's servers hold at once for all peers
// together: per-peer turns bound each peer, but admission is an HMAC over
// the mesh secret, so a holder of the secret can be many peers. A server
// takes bytes after its peer's turn, before it makes a buffer; callers
// wait in arrival order. Safe for concurrent use.
type Bytes struct {
	sem   *semaphore.Weighted
	limit int64
	held  atomic.Int64
}

// NewBytes returns a budget of limit bytes; limit must be above 0.
func NewBytes(limit int64) *Bytes {
	if limit <= 0 {
		panic(fmt.Sprintf("peerlimit: a budget of %d bytes", limit))
	}
	return &Bytes{sem: semaphore.NewWeighted(limit), limit: limit}
}

// Take waits until n bytes are free (the whole budget, if n exceeds it)
// or ctx ends, and returns the function that gives them back, which must
// be called exactly once after a nil error.
func (b *Bytes) Take(ctx context.Context, n int64) (func(), error) {
	n = min(n, b.limit)
	if err := b.sem.Acquire(ctx, n); err != nil {
		return nil, err
	}
	b.held.Add(n)
	return func() { b.held.Add(-n); b.sem.Release(n) }, nil
}

// Held reports the bytes taken and not given back.
func (b *Bytes) Held() int64 { return b.held.Load() }
