package peerlimit

import (
	"context"
	"errors"
	"testing"
)

func TestTurnsPerPeer(t *testing.T) {
	turns := &Turns{Limit: 2}
	ctx := context.Background()
	r1, err := turns.Take(ctx, nil, "a")
	if err != nil {
		t.Fatal(err)
	}
	r2, ok := turns.TryTake("a")
	if !ok {
		t.Fatal("second turn of a: refused, want taken")
	}
	if _, ok := turns.TryTake("a"); ok {
		t.Fatal("third turn of a: taken, want refused (limit 2)")
	}
	if r, ok := turns.TryTake("b"); !ok {
		t.Fatal("turn of b while a is at its limit: refused, want taken")
	} else {
		r()
	}
	stop := make(chan struct{})
	close(stop)
	if _, err := turns.Take(ctx, stop, "a"); !errors.Is(err, ErrStopped) {
		t.Fatalf("take with stop closed and no turn free: got %v, want ErrStopped", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := turns.Take(cctx, nil, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("take with ctx ended and no turn free: got %v, want context.Canceled", err)
	}
	if callers, held := turns.Load("a"); callers != 2 || held != 2 {
		t.Fatalf("load of a: got %d callers, %d held, want 2 and 2", callers, held)
	}
	r1()
	r2()
	if callers, held := turns.Load("a"); callers != 0 || held != 0 {
		t.Fatalf("load of a after release: got %d callers, %d held, want 0 and 0", callers, held)
	}
	if len(turns.peers) != 0 {
		t.Fatalf("peers kept after every turn ended: %d, want 0", len(turns.peers))
	}
}

func TestTurnsWithoutLimitPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Take on Turns with no Limit: returned, want a panic rather than a wait for ever")
		}
	}()
	var turns Turns
	_, _ = turns.TryTake("a")
}

func TestBytesBudget(t *testing.T) {
	b := NewBytes(10)
	ctx := context.Background()
	give6, err := b.Take(ctx, 6)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.Take(cctx, 5); !errors.Is(err, context.Canceled) {
		t.Fatalf("take of 5 with 4 free and ctx ended: got %v, want context.Canceled", err)
	}
	// More than the whole budget takes the whole budget, once it is free.
	give6()
	giveAll, err := b.Take(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Held(); got != 10 {
		t.Fatalf("held after a take over the budget: %d, want 10", got)
	}
	giveAll()
	if got := b.Held(); got != 0 {
		t.Fatalf("held after every take was given back: %d, want 0", got)
	}
}
