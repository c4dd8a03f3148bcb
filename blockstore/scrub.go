package blockstore

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/ipfs/go-cid"
)

// ScrubReport says what a scrub checked.
type ScrubReport struct {
	Checked int64 `json:"checked"` // blocks read and verified, corrupt ones included
	Bytes   int64 `json:"bytes"`   // payload bytes of the blocks that verified
	Corrupt int64 `json:"corrupt"` // blocks whose bytes did not match their CID
}

// Scrub reads and verifies every block s lists, on GOMAXPROCS goroutines.
// It calls corrupt (never concurrently) for each block that fails with
// ErrCorrupt, and goes on; blocks deleted during the scrub are skipped. It
// stops at the first other error, or when ctx is done, and returns the
// report so far with it. corrupt may be nil.
func Scrub(ctx context.Context, s interface {
	Lister
	Getter
}, corrupt func(cid.Cid, error)) (ScrubReport, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		checked, bytes, bad atomic.Int64
		reportMu            sync.Mutex
		wg                  sync.WaitGroup
	)
	work := make(chan cid.Cid)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for c := range work {
				data, err := s.Get(ctx, c)
				switch {
				case err == nil:
					checked.Add(1)
					bytes.Add(int64(len(data)))
				case errors.Is(err, ErrCorrupt):
					checked.Add(1)
					bad.Add(1)
					if corrupt != nil {
						reportMu.Lock()
						corrupt(c, err)
						reportMu.Unlock()
					}
				case errors.Is(err, ErrNotFound):
				default:
					cancel(fmt.Errorf("scrub %s: %w", c, err))
				}
			}
		})
	}
	var listErr error
	for c, err := range s.All(ctx) {
		if err != nil {
			listErr = err
			break
		}
		select {
		case work <- c:
			continue
		case <-ctx.Done():
		}
		break
	}
	close(work)
	wg.Wait()
	rep := ScrubReport{Checked: checked.Load(), Bytes: bytes.Load(), Corrupt: bad.Load()}
	if err := context.Cause(ctx); err != nil {
		return rep, err
	}
	if listErr != nil {
		return rep, fmt.Errorf("scrub: list: %w", listErr)
	}
	return rep, nil
}
