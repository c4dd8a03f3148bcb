package mesh

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
)

// Detector is the failure detector's timing: memberlist's SWIM probes with
// Lifeguard's suspicion. A member that stops answering is probed by some
// member within about one ProbeInterval, suspected when neither a direct
// nor an indirect probe is answered within that interval, and declared
// dead when it has not refuted the suspicion within its timeout,
// SuspicionMult × ProbeInterval × max(1, log10(members)) (up to six times
// that in meshes of SuspicionMult members or more, until other members
// confirm the suspicion). A live member is only declared dead if nothing it
// sends gets through for that whole time.
type Detector struct {
	ProbeInterval time.Duration
	SuspicionMult int
}

// Bounds of a Detector: below them, a member whose messages wait behind a
// burst of bulk data on the shared connection, or whose process is starved
// of CPU for a moment, would be declared dead, and a false death costs a
// full re-replication of what it held; above them, detection takes minutes.
const (
	MinProbeInterval = 100 * time.Millisecond
	MaxProbeInterval = 10 * time.Second
	MinSuspicionMult = 2
	MaxSuspicionMult = 20
)

// DefaultDetector is weft's detector: probes every 500 ms, suspicion for 4
// probe intervals (2 s in meshes of up to 10 members): a killed member is
// declared dead within about 3 s, twice as fast as memberlist's LAN
// defaults (1 s, 4), and a live one only after 2.5 s or more during which
// none of its messages got through, which neither saturated CPUs nor a full
// capped link caused over QUIC in the measurements of README's heal
// section (over TCP gossip shares one connection with bulk data;
// fairsend.go and tcpqueue.go bound what it waits behind, which made false
// deaths rare, not gone).
func DefaultDetector() Detector {
	return Detector{ProbeInterval: 500 * time.Millisecond, SuspicionMult: 4}
}

// Validate reports a timing outside the bounds.
func (d Detector) Validate() error {
	var errs []error
	if d.ProbeInterval < MinProbeInterval || d.ProbeInterval > MaxProbeInterval {
		errs = append(errs, fmt.Errorf("probe interval %v: want %v to %v", d.ProbeInterval, MinProbeInterval, MaxProbeInterval))
	}
	if d.SuspicionMult < MinSuspicionMult || d.SuspicionMult > MaxSuspicionMult {
		errs = append(errs, fmt.Errorf("suspicion multiplier %d: want %d to %d", d.SuspicionMult, MinSuspicionMult, MaxSuspicionMult))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("failure detector: %w", err)
	}
	return nil
}

// Gossip returns memberlist's LAN configuration with d's timings. The probe
// timeout, after which indirect probes start, is half the interval, as in
// memberlist's defaults; the reliable-channel timeout stays long, as a
// full state exchange may wait behind bulk data on a capped link. How long
// memberlist keeps gossiping a dead or departed member's state, and then
// forgets it (GossipToTheDeadTime), is DeadGossipProbes probe intervals:
// 30 s with the default detector, as in memberlist's LAN preset, and
// shorter for a detector tuned to react faster.
func (d Detector) Gossip() *memberlist.Config {
	c := memberlist.DefaultLANConfig()
	c.ProbeInterval = d.ProbeInterval
	c.ProbeTimeout = d.ProbeInterval / 2
	c.SuspicionMult = d.SuspicionMult
	c.GossipToTheDeadTime = DeadGossipProbes * d.ProbeInterval
	return c
}

// DeadGossipProbes is memberlist's GossipToTheDeadTime in probe intervals.
const DeadGossipProbes = 60
