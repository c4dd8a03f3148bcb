package clock

import (
	"context"
	"sync"
	"testing"
	"time"
)

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// received returns the value waiting in c, failing if there is none: the
// Fake delivers before Advance returns, so nothing needs waiting for.
func received(t *testing.T, c <-chan time.Time, what string) time.Time {
	t.Helper()
	select {
	case v := <-c:
		return v
	default:
		t.Fatalf("%s: nothing delivered", what)
		return time.Time{}
	}
}

func empty(t *testing.T, c <-chan time.Time, what string) {
	t.Helper()
	select {
	case v := <-c:
		t.Fatalf("%s: got %v, want nothing", what, v)
	default:
	}
}

func TestFakeAfterFiresAtDueTime(t *testing.T) {
	f := NewFake(epoch)
	late := f.After(3 * time.Second)
	early := f.After(time.Second)
	same := f.After(time.Second)
	if got := f.Waiters(); got != 3 {
		t.Fatalf("Waiters: got %d, want 3", got)
	}
	f.Advance(999 * time.Millisecond)
	empty(t, early, "before due")
	f.Advance(2001 * time.Millisecond)
	if got, want := received(t, early, "early"), epoch.Add(time.Second); !got.Equal(want) {
		t.Fatalf("early: got %v, want %v", got, want)
	}
	if got, want := received(t, same, "same"), epoch.Add(time.Second); !got.Equal(want) {
		t.Fatalf("same: got %v, want %v", got, want)
	}
	if got, want := received(t, late, "late"), epoch.Add(3*time.Second); !got.Equal(want) {
		t.Fatalf("late: got %v, want %v", got, want)
	}
	if got, want := f.Now(), epoch.Add(3*time.Second); !got.Equal(want) {
		t.Fatalf("Now: got %v, want %v", got, want)
	}
	if got := f.Waiters(); got != 0 {
		t.Fatalf("Waiters after firing: got %d, want 0", got)
	}
}

func TestFakeAfterNonPositiveFiresAtOnce(t *testing.T) {
	f := NewFake(epoch)
	for _, d := range []time.Duration{0, -time.Second} {
		c := f.After(d)
		if got := received(t, c, "After"); !got.Equal(epoch) {
			t.Fatalf("After(%v): got %v, want %v", d, got, epoch)
		}
	}
	if got := f.Waiters(); got != 0 {
		t.Fatalf("Waiters: got %d, want 0", got)
	}
}

func TestFakeTickerHoldsOneTick(t *testing.T) {
	f := NewFake(epoch)
	tk := f.NewTicker(time.Second)
	defer tk.Stop()
	f.Advance(time.Second)
	f.Advance(time.Second) // unread: this tick is dropped
	if got, want := received(t, tk.C(), "first"), epoch.Add(time.Second); !got.Equal(want) {
		t.Fatalf("first tick: got %v, want %v", got, want)
	}
	empty(t, tk.C(), "dropped tick")
	// Passing several periods at once ticks once, and the ticker keeps its
	// phase: the next tick is on the next whole period.
	f.Advance(2500 * time.Millisecond) // to 4.5s
	if got, want := received(t, tk.C(), "jump"), epoch.Add(3*time.Second); !got.Equal(want) {
		t.Fatalf("tick after jump: got %v, want %v", got, want)
	}
	empty(t, tk.C(), "after jump")
	f.Advance(499 * time.Millisecond)
	empty(t, tk.C(), "before 5s")
	f.Advance(time.Millisecond)
	if got, want := received(t, tk.C(), "5s"), epoch.Add(5*time.Second); !got.Equal(want) {
		t.Fatalf("tick at 5s: got %v, want %v", got, want)
	}
}

func TestFakeTickerStop(t *testing.T) {
	f := NewFake(epoch)
	tk := f.NewTicker(time.Second)
	other := f.NewTicker(time.Second)
	defer other.Stop()
	f.Advance(time.Second)
	tk.Stop()
	tk.Stop() // harmless
	if got := f.Waiters(); got != 1 {
		t.Fatalf("Waiters after Stop: got %d, want 1", got)
	}
	// A tick delivered before Stop stays, as with time.Ticker.
	received(t, tk.C(), "tick before Stop")
	f.Advance(5 * time.Second)
	empty(t, tk.C(), "stopped ticker")
	received(t, other.C(), "running ticker")
}

func TestFakeNewTickerPanicsOnNonPositive(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("NewTicker(0) did not panic")
		}
	}()
	NewFake(epoch).NewTicker(0)
}

func TestFakeSet(t *testing.T) {
	f := NewFake(epoch)
	c := f.After(time.Minute)
	f.Set(epoch.Add(-time.Hour)) // back: nothing fires, the timer keeps its due time
	empty(t, c, "after turning back")
	if got := f.Now(); !got.Equal(epoch.Add(-time.Hour)) {
		t.Fatalf("Now: got %v, want %v", got, epoch.Add(-time.Hour))
	}
	f.Set(epoch.Add(time.Minute))
	if got := received(t, c, "after Set forward"); !got.Equal(epoch.Add(time.Minute)) {
		t.Fatalf("After: got %v, want %v", got, epoch.Add(time.Minute))
	}
}

func TestFakeBlockUntil(t *testing.T) {
	f := NewFake(epoch)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan time.Time)
	go func() { done <- <-f.After(time.Second) }()
	if err := f.BlockUntil(ctx, 1); err != nil {
		t.Fatalf("BlockUntil: %v", err)
	}
	f.Advance(time.Second)
	select {
	case got := <-done:
		if !got.Equal(epoch.Add(time.Second)) {
			t.Fatalf("got %v, want %v", got, epoch.Add(time.Second))
		}
	case <-ctx.Done():
		t.Fatal("the waiting goroutine never woke")
	}
	short, cancelShort := context.WithCancel(ctx)
	cancelShort()
	if err := f.BlockUntil(short, 1); err != context.Canceled {
		t.Fatalf("BlockUntil with no waiter: got %v, want %v", err, context.Canceled)
	}
}

// TestFakeConcurrent races Advances against each other and against the
// other methods: under -race this checks the locking, and the end state
// checks that no Advance was lost and every timer fired.
func TestFakeConcurrent(t *testing.T) {
	const goroutines, steps = 4, 100
	f := NewFake(epoch)
	var timers []<-chan time.Time
	for i := 1; i <= goroutines*steps; i++ {
		timers = append(timers, f.After(time.Duration(i)*time.Millisecond))
	}
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range steps {
				f.Advance(time.Millisecond)
				f.Now()
				f.Waiters()
				tk := f.NewTicker(time.Millisecond)
				f.After(time.Millisecond)
				tk.Stop()
			}
		})
	}
	wg.Wait()
	if got, want := f.Now(), epoch.Add(goroutines*steps*time.Millisecond); !got.Equal(want) {
		t.Fatalf("Now: got %v, want %v", got, want)
	}
	for i, c := range timers {
		if got, want := received(t, c, "timer"), epoch.Add(time.Duration(i+1)*time.Millisecond); !got.Equal(want) {
			t.Fatalf("timer %d: got %v, want %v", i, got, want)
		}
	}
}
