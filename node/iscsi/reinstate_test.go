package iscsi

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
)

// gatedDisk is a ramDisk whose writes, once entered, wait for the gate
// to open whatever their context says, as a disk's I/O in flight does;
// it records whether a write landed after the new login was answered.
type gatedDisk struct {
	*ramDisk
	entered  chan struct{}
	gate     chan struct{}
	answered *atomic.Bool // set by the test when the new login is answered
	late     atomic.Bool  // a write landed after that
}

func (d *gatedDisk) WriteAt(ctx context.Context, p []byte, off int64) error {
	d.entered <- struct{}{}
	<-d.gate
	err := d.ramDisk.WriteAt(ctx, p, off)
	if d.answered.Load() {
		d.late.Store(true)
	}
	return err
}

// gatedTargets serves one gatedDisk.
type gatedTargets struct {
	fakeTargets
	disk *gatedDisk
}

func (g gatedTargets) Open(ctx context.Context, target, initiator string, client netip.Addr) (Disk, error) {
	if _, err := g.fakeTargets.Open(ctx, target, initiator, client); err != nil {
		return nil, err
	}
	return g.disk, nil
}

// signalHandler is a slog handler that reports, once, a record whose
// message holds a string.
type signalHandler struct {
	slog.Handler
	match string
	seen  chan struct{}
	once  *atomic.Bool
}

func (h signalHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.match) && h.once.CompareAndSwap(false, true) {
		close(h.seen)
	}
	return nil
}

func (h signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h signalHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h signalHandler) WithGroup(string) slog.Handler            { return h }

// A login reinstating a session (same initiator, ISID and target) is
// answered only once the old session's commands are done and its
// connection closed (RFC 7143 section 6.3.5): a write of the old session
// still in the disk cannot land after the new session is told it is
// logged in (a review found the old session closed but its commands left
// running).
func TestReinstatementWaitsForTheOldSession(t *testing.T) {
	answered := new(atomic.Bool)
	disk := &gatedDisk{ramDisk: &ramDisk{data: make([]byte, 1<<20)}, entered: make(chan struct{}, 1),
		gate: make(chan struct{}), answered: answered}
	ending := make(chan struct{})
	targets := gatedTargets{fakeTargets: oneTarget(CHAP{}), disk: disk}
	srv := newTestServer(t, nil, func(c *Config) {
		c.Targets = targets
		c.Logger = slog.New(signalHandler{Handler: slog.DiscardHandler, match: "reinstated by a new login: closing it, waiting for its commands",
			seen: ending, once: new(atomic.Bool)})
	})
	addr := serve(t, srv)
	gateOpen := false
	openGate := func() {
		if !gateOpen {
			gateOpen = true
			close(disk.gate)
		}
	}
	t.Cleanup(openGate)

	old := dial(t, addr)
	old.loginNone(testIQN, offer)
	old.scsiCmd(cdb10(0x2a, 0, 1), false, true, 512, make([]byte, 512), true) // immediate data: runs at once
	<-disk.entered

	// The same ISID logs in again, from a new connection.
	neu := dial(t, addr)
	done := make(chan struct{})
	go func() {
		defer close(done)
		st, _, _ := neu.exchange(stageSecurity, stageOperational, true, textKeys{
			{"InitiatorName", "iqn.2000-01.test:ini"}, {"SessionType", "Normal"}, {"TargetName", testIQN}, {"AuthMethod", "None"}})
		if st != statusSuccess {
			t.Errorf("security stage: got status %#04x, want success", uint16(st))
			return
		}
		st, _, _ = neu.exchange(stageOperational, stageFullFeature, true, offer)
		answered.Store(true)
		if st != statusSuccess {
			t.Errorf("reinstating login: got status %#04x, want success", uint16(st))
		}
	}()
	// Either the target says it is ending the old session (then the old
	// write may finish), or it answers the new login first.
	select {
	case <-ending:
	case <-done:
	}
	if answered.Load() {
		t.Fatal("got the reinstating login answered while the old session's write was in the disk, want it answered after")
	}
	openGate()
	<-done
	if disk.late.Load() {
		t.Fatal("got the old session's write landing after the new login was answered")
	}
}
