// Package clock lets the cluster layer read time and wait through an
// interface, so that tests and simulations control it: Real is the wall
// clock, Fake moves only when told to.
package clock

import "time"

// Clock is the time source of the cluster layer.
type Clock interface {
	Now() time.Time
	// NewTicker ticks every d, dropping ticks a slow reader misses.
	NewTicker(d time.Duration) Ticker
	// After delivers the time once d has passed.
	After(d time.Duration) <-chan time.Time
}

// Ticker is a time.Ticker behind an interface.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

// Real returns the wall clock.
func Real() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
func (realClock) NewTicker(d time.Duration) Ticker       { return realTicker{time.NewTicker(d)} }

type realTicker struct{ t *time.Ticker }

func (t realTicker) C() <-chan time.Time { return t.t.C }
func (t realTicker) Stop()               { t.t.Stop() }
