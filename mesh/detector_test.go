package mesh

import (
	"testing"
	"time"
)

func TestDetectorValidate(t *testing.T) {
	if err := DefaultDetector().Validate(); err != nil {
		t.Fatalf("default detector: %v", err)
	}
	for _, d := range []Detector{
		{},
		{ProbeInterval: 50 * time.Millisecond, SuspicionMult: 4},
		{ProbeInterval: time.Minute, SuspicionMult: 4},
		{ProbeInterval: time.Second, SuspicionMult: 1},
		{ProbeInterval: time.Second, SuspicionMult: 21},
	} {
		if err := d.Validate(); err == nil {
			t.Errorf("%+v: Validate() = nil, want an error", d)
		}
	}
}

// TestDetectorGossip checks the memberlist timings a detector sets: the
// probe timeout (when indirect probes start) is half the interval, and the
// dead are gossiped to and then forgotten after 60 intervals, memberlist's
// 30 s with the default detector.
func TestDetectorGossip(t *testing.T) {
	c := Detector{ProbeInterval: 800 * time.Millisecond, SuspicionMult: 5}.Gossip()
	if c.ProbeInterval != 800*time.Millisecond || c.ProbeTimeout != 400*time.Millisecond || c.SuspicionMult != 5 || c.GossipToTheDeadTime != 48*time.Second {
		t.Errorf("got probe interval %v, timeout %v, suspicion x%d, dead gossiped %v; want 800ms, 400ms, x5, 48s",
			c.ProbeInterval, c.ProbeTimeout, c.SuspicionMult, c.GossipToTheDeadTime)
	}
	if got := DefaultDetector().Gossip().GossipToTheDeadTime; got != 30*time.Second {
		t.Errorf("default detector gossips the dead for %v, want memberlist's 30s", got)
	}
}
