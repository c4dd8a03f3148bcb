package datapath

import (
	"context"
	"fmt"

	"golang.org/x/time/rate"
)

// minLimitBurst is the smallest burst of a transfer's token bucket.
const minLimitBurst = 16 << 10

// newLimiter returns the token bucket of a transfer capped at bytesPerSec,
// or nil for no cap. Its burst is a quarter second of traffic, so any
// window of a few seconds holds the cap.
func newLimiter(bytesPerSec float64) *rate.Limiter {
	if bytesPerSec <= 0 {
		return nil
	}
	burst := max(minLimitBurst, int(bytesPerSec/4))
	return rate.NewLimiter(rate.Limit(bytesPerSec), burst)
}

// waitBytes takes bytes tokens from lim, waiting for them; a nil lim has
// tokens without end.
func waitBytes(ctx context.Context, lim *rate.Limiter, bytes int64) error {
	if lim == nil {
		return nil
	}
	for bytes > 0 {
		n := min(bytes, int64(lim.Burst()))
		if err := lim.WaitN(ctx, int(n)); err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return ctxErr
			}
			return fmt.Errorf("bandwidth limit: %w", err)
		}
		bytes -= n
	}
	return nil
}
