package powerloss

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// Workload is a store driven one step at a time by one goroutine, with a
// record of what it saw acknowledged.
type Workload interface {
	// Step runs one operation. With faulty unset an error fails the test
	// (Step calls t.Fatal); with it set, an injected fault may cause one,
	// which Step returns. ErrStopped says the workload cannot go on.
	Step(ctx context.Context, faulty bool) error
	// Check opens the store on fs, verifies every acknowledgement of epoch
	// <= upTo (failing the test with what in the message) and returns how
	// many it verified.
	Check(ctx context.Context, fs vfs.FS, upTo int, what string) int
	// Close closes the store, ignoring errors.
	Close()
}

// ErrStopped is returned by a Workload's Step that cannot go on.
var ErrStopped = errors.New("the workload stopped")

// RunCrashes drives workloads through defPoints crash points (or
// $WEFT_POWERLOSS_POINTS), a fresh FS and workload every perStore points,
// a crash point every 1..2*gap changing operations, checks each, and logs
// the figures.
func RunCrashes(t *testing.T, defPoints, perStore, gap int, open func(seed uint64, fs *FS) Workload) {
	t.Helper()
	seed := logSeed(t)
	points := pointsFor(t, defPoints)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Minute)
	defer cancel()
	checked := 0
	cur := closeOnFailure(t)
	for tried, round := 0, uint64(0); tried < points; round++ {
		fs := New(seed + round)
		w := open(seed+round, fs)
		*cur = w
		want := min(perStore, points-tried)
		fs.PlanCrashes(want, gap)
		for step, got := 0, 0; got < want; step++ {
			if step > 500*want {
				t.Fatalf("seed %d: %d steps took only %d of %d crash points", seed+round, step, got, want)
			}
			w.Step(ctx, false)
			for _, c := range fs.Crashes() {
				checked += w.Check(ctx, c.FS, c.Index, fmt.Sprintf("seed %d: crash point %d (after operation %d, %d%% of unsynced data kept)",
					seed+round, c.Index, c.Op, c.Unsynced))
				got++
			}
		}
		tried += want
		w.Close()
		*cur = nil
	}
	t.Logf("power loss: crash points tried: %d, acknowledgements checked: %d", points, checked)
}

// closeOnFailure returns where a driver keeps its current workload, which a
// test ending early (t.Fatal) closes. One cleanup for the run, not one per
// workload: each would hold its workload's in-memory file system to the end.
func closeOnFailure(t *testing.T) *Workload {
	cur := new(Workload)
	t.Cleanup(func() {
		if *cur != nil {
			(*cur).Close()
		}
	})
	return cur
}

// RunFaults makes two runs for every five of defPoints (or of
// $WEFT_POWERLOSS_POINTS), each on a fresh FS and workload: a few steps,
// then a fault injected (see InjectFault; exempt paths get none) and more
// steps, until it has fired (a run in which it never does is not counted),
// in which every error caused by an injected ENOSPC must satisfy isNoSpace.
// A fault must surface as an error of some step unless every operation it
// failed is one bestEffort tells the store may see fail with that error
// quietly (a removal retried later, a reserve it can do without). Then the
// fault is removed, the workload closed, and every acknowledgement checked
// after a restart and after a power loss. It logs the figures.
func RunFaults(t *testing.T, defPoints int, exempt func(path string) bool, bestEffort func(op errorfs.Op, err error) bool,
	isNoSpace func(error) bool, open func(seed uint64, fs *FS) Workload) {
	t.Helper()
	r := rand.New(rand.NewPCG(logSeed(t), 2))
	runs := max(1, pointsFor(t, defPoints)*2/5)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Minute)
	defer cancel()
	fired, surfaced, quiet, checked := 0, 0, 0, 0
	cur := closeOnFailure(t)
	for run := range runs {
		fs := New(r.Uint64())
		w := open(r.Uint64(), fs)
		*cur = w
		for range 5 + r.IntN(30) {
			w.Step(ctx, false)
		}
		fault := fs.InjectFault(r, exempt)
		errs := 0
		// Steps go on until the fault has fired, or the workload could not
		// reach a faulty operation in many more.
		for step, least := 0, 10+r.IntN(10); step < least || len(fault.Fired()) == 0 && step < 50*least; step++ {
			err := w.Step(ctx, true)
			if err == nil {
				continue
			}
			errs++
			if errors.Is(err, ErrStopped) {
				break
			}
			if errors.Is(fault.Err, syscall.ENOSPC) && !isNoSpace(err) {
				t.Fatalf("run %d: a step failed on an injected ENOSPC with %v; want the store's no-space error", run, err)
			}
		}
		fs.SetFault(nil)
		ops := fault.Fired()
		if len(ops) > 0 {
			fired++
			switch {
			case errs > 0:
				surfaced++
			case !slices.ContainsFunc(ops, func(op errorfs.Op) bool { return !bestEffort(op, fault.Err) }):
				quiet++
			default:
				t.Fatalf("run %d: %v injected on %v, and no step failed", run, fault.Err, ops)
			}
		}
		w.Close()
		*cur = nil
		checked += w.Check(ctx, fs, fs.Epoch(), fmt.Sprintf("run %d (%v): after the fault, restarted", run, fault.Err))
		checked += w.Check(ctx, fs.CrashNow(), fs.Epoch(), fmt.Sprintf("run %d (%v): after the fault, power lost", run, fault.Err))
	}
	t.Logf("power loss with faults: runs: %d, faults injected: %d, surfaced as errors: %d, on best-effort operations only: %d, acknowledgements checked: %d",
		runs, fired, surfaced, quiet, checked)
}
