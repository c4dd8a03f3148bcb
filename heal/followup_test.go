package heal

import (
	"testing"
	"time"
)

func TestFollowUpsWait(t *testing.T) {
	const interval = 30 * time.Second
	var f followUps
	if got := f.wait(0, interval); got != interval {
		t.Fatalf("nothing short: got %v, want the interval %v", got, interval)
	}
	want := followUpDelay
	for i := range 100 { // the same count, pass after pass: doubling, capped, never negative
		got := f.wait(7, interval)
		if got != min(want, interval) || got <= 0 {
			t.Fatalf("pass %d with the same count: got %v, want %v", i, got, min(want, interval))
		}
		want = min(want*2, interval)
	}
	if got := f.wait(6, interval); got != followUpDelay {
		t.Fatalf("the count changed: got %v, want %v", got, followUpDelay)
	}
	f = followUps{} // a trigger
	if got := f.wait(6, interval); got != followUpDelay {
		t.Fatalf("after a trigger: got %v, want %v", got, followUpDelay)
	}
}
