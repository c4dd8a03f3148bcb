package blockstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/blockstore/storetest"
	"github.com/weft-mesh/weft/internal/powerloss"
)

const powerDir = "/store"

// powerOptions keep segments at the minimum so that puts rotate them and
// sweeps compact them often.
func powerOptions(fs vfs.FS) blockstore.Options {
	o := testOptions()
	o.SegmentSize = 64 << 10
	o.FS = fs
	return o
}

// ackedBlock is a block whose put returned nil, and the epoch it did so in.
type ackedBlock struct {
	b     blockstore.Block
	epoch int
}

// blockWorkload puts blocks that stay (acknowledged, checked after every
// crash) and garbage blocks that it deletes or sweeps, collects garbage
// (which compacts), and closes and reopens the store now and then. It is
// driven one step at a time by a single goroutine.
type blockWorkload struct {
	t       *testing.T
	r       *rand.Rand
	fs      *powerloss.FS
	d       *blockstore.Disk
	acked   []ackedBlock
	garbage map[cid.Cid]bool
	// failures counts the steps that failed with an injected fault.
	failures int
}

func newBlockWorkload(t *testing.T, seed uint64, fs *powerloss.FS) *blockWorkload {
	d, err := blockstore.Open(powerDir, powerOptions(fs))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	w := &blockWorkload{t: t, r: rand.New(rand.NewPCG(seed, 1)), fs: fs, d: d, garbage: map[cid.Cid]bool{}}
	t.Cleanup(func() { w.d.Close() })
	return w
}

// step runs one operation. An error from the store is returned only if
// fault is set (an injected fault may cause it); otherwise it fails t.
func (w *blockWorkload) step(ctx context.Context, faulty bool) error {
	fail := func(what string, err error) error {
		if !faulty {
			w.t.Fatalf("%s: %v", what, err)
		}
		w.failures++
		return err
	}
	switch k := w.r.IntN(20); {
	case k < 13:
		var live []blockstore.Block
		for range 1 + w.r.IntN(4) {
			live = append(live, storetest.NewBlock(w.r, 1+w.r.IntN(8<<10)))
		}
		bs := live
		if w.r.IntN(2) == 0 {
			g := storetest.NewBlock(w.r, 1+w.r.IntN(8<<10))
			w.garbage[g.CID] = true
			bs = append(bs, g)
		}
		if err := w.d.PutMany(ctx, bs); err != nil {
			return fail("PutMany", err)
		}
		epoch := w.fs.Epoch()
		for _, b := range live {
			w.acked = append(w.acked, ackedBlock{b, epoch})
		}
	case k < 15:
		for c := range w.garbage {
			if err := w.d.Delete(ctx, c); err != nil {
				return fail("Delete", err)
			}
			delete(w.garbage, c)
			break
		}
	case k < 19:
		gen := w.d.BeginGC()
		if _, err := w.d.Sweep(ctx, gen, func(c cid.Cid) bool { return !w.garbage[c] }); err != nil {
			return fail("Sweep", err)
		}
	default:
		if err := w.d.Close(); err != nil {
			fail("Close", err)
		}
		d, err := blockstore.Open(powerDir, powerOptions(w.fs))
		if err != nil {
			// The store stays closed; the caller reopens it once the
			// fault is gone.
			return fail("reopen", err)
		}
		w.d = d
	}
	return nil
}

// check opens the store on fs and verifies every block acknowledged in an
// epoch <= upTo, then scrubs it: nothing may read back corrupt. It returns
// how many acknowledged blocks it checked.
func (w *blockWorkload) check(ctx context.Context, fs vfs.FS, upTo int, what string) int {
	w.t.Helper()
	d, err := blockstore.Open(powerDir, powerOptions(fs))
	if err != nil {
		w.t.Fatalf("%s: reopen: %v", what, err)
	}
	defer d.Close()
	n := 0
	for _, a := range w.acked {
		if a.epoch > upTo {
			break
		}
		got, err := d.Get(ctx, a.b.CID)
		if err != nil {
			w.t.Fatalf("%s: acknowledged block %s: %v", what, a.b.CID, err)
		}
		if !bytes.Equal(got, a.b.Data) {
			w.t.Fatalf("%s: acknowledged block %s: got other bytes", what, a.b.CID)
		}
		n++
	}
	rep, err := blockstore.Scrub(ctx, d, nil)
	if err != nil || rep.Corrupt != 0 {
		w.t.Fatalf("%s: scrub: %+v, %v; want no corrupt block", what, rep, err)
	}
	return n
}

// TestPowerLoss runs puts, deletes, sweeps (with compaction) and restarts
// on a file system that loses power at hundreds of seeded points: at each,
// the store reopened on what a crash left (the synced data, and half of
// the time a random part of the rest) must open, hold every block whose put
// returned before the crash, and hold nothing corrupt.
func TestPowerLoss(t *testing.T) {
	seed := powerloss.Seed(t)
	points := powerloss.Points(t, 100)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Minute)
	defer cancel()
	tried, checked, acked := 0, 0, 0
	var ops int64
	// A fresh store every 25 crash points keeps each check (which reads
	// every acknowledged block) short.
	for round := uint64(0); tried < points; round++ {
		fs := powerloss.New(seed + round)
		w := newBlockWorkload(t, seed+round, fs)
		want := min(25, points-tried)
		fs.PlanCrashes(want, 12)
		for step, got := 0, 0; got < want; step++ {
			if step > 200*want {
				t.Fatalf("%d steps took only %d of %d crash points", step, got, want)
			}
			w.step(ctx, false)
			for _, c := range fs.Crashes() {
				checked += w.check(ctx, c.FS, c.Index, fmt.Sprintf("seed %d: %s", seed+round, crashName(c)))
				got++
			}
		}
		tried += want
		acked += len(w.acked)
		ops += fs.Ops()
		w.d.Close()
	}
	t.Logf("power loss: crash points tried: %d, acknowledged puts checked: %d (%d blocks acknowledged, %d file-system operations)",
		tried, checked, acked, ops)
}

func crashName(c powerloss.Crash) string {
	return fmt.Sprintf("crash point %d (after operation %d, %d%% of unsynced data kept)", c.Index, c.Op, c.Unsynced)
}

// TestPowerLossFaults fails one seeded operation on the store's files (a
// write, sync, create, rename or removal) with EIO or ENOSPC, goes on with
// the workload for a while, then loses power: the failed operation must
// surface as an error (ErrNoSpace for ENOSPC), the store must not panic,
// and once the fault is gone, every block acknowledged must read back,
// after a reopen and after a power loss.
//
// Pebble's own files (dir/index) get no faults: Pebble stops the process
// on a failed log or manifest write by design (our logger's Fatalf
// panics), which is a process death, tried by TestCrash.
func TestPowerLossFaults(t *testing.T) {
	seed := powerloss.Seed(t)
	runs := powerloss.FaultRuns(t, 100)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	r := rand.New(rand.NewPCG(seed, 2))
	surfaced, checked := 0, 0
	for run := range runs {
		fs := powerloss.New(r.Uint64())
		w := newBlockWorkload(t, r.Uint64(), fs)
		for range 5 + r.IntN(20) {
			w.step(ctx, false)
		}
		inject := powerloss.ErrIO
		if r.IntN(2) == 0 {
			inject = powerloss.ErrNoSpace
		}
		// A full device stays full until space is freed; an I/O error
		// may be one bad sector or a dying device.
		persistent := errors.Is(inject, syscall.ENOSPC) || r.IntN(2) == 0
		at := fs.Ops() + 1 + int64(r.IntN(30))
		var fired atomic.Bool
		fs.SetFault(func(op errorfs.Op) error {
			if op.Kind.ReadOrWrite() != errorfs.OpIsWrite || strings.Contains(op.Path, "/index") {
				return nil
			}
			if fs.Ops() < at || fired.Load() && !persistent {
				return nil
			}
			fired.Store(true)
			return inject
		})
		var errs []error
		for range 10 + r.IntN(10) {
			if err := w.step(ctx, true); err != nil {
				errs = append(errs, err)
				if errors.Is(inject, syscall.ENOSPC) && !errors.Is(err, blockstore.ErrNoSpace) && !errors.Is(err, blockstore.ErrClosed) {
					t.Fatalf("run %d: a step failed on an injected ENOSPC with %v; want ErrNoSpace", run, err)
				}
			}
		}
		fs.SetFault(nil)
		if len(errs) > 0 {
			surfaced++
		}
		w.d.Close()
		checked += w.check(ctx, fs, fs.Epoch(), fmt.Sprintf("run %d (%v): after the fault, reopened", run, inject))
		checked += w.check(ctx, fs.CrashNow(), fs.Epoch(), fmt.Sprintf("run %d (%v): after the fault, power lost", run, inject))
	}
	t.Logf("power loss with faults: runs: %d, faults surfaced as errors: %d, acknowledged puts checked: %d", runs, surfaced, checked)
}
