package blockstore_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"path"
	"strings"
	"testing"

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
	return w
}

// Step runs one operation. An error from the store is returned only if
// faulty is set (an injected fault may cause it); otherwise it fails t.
func (w *blockWorkload) Step(ctx context.Context, faulty bool) error {
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

// Close closes the store.
func (w *blockWorkload) Close() { w.d.Close() }

// Check opens the store on fs and verifies every block acknowledged in an
// epoch <= upTo, then scrubs it: nothing may read back corrupt. It returns
// how many acknowledged blocks it checked.
func (w *blockWorkload) Check(ctx context.Context, fs vfs.FS, upTo int, what string) int {
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
	// A fresh store every 25 crash points keeps each check (which reads
	// every acknowledged block) short.
	powerloss.RunCrashes(t, 100, 25, 12, func(seed uint64, fs *powerloss.FS) powerloss.Workload {
		return newBlockWorkload(t, seed, fs)
	})
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
	noSpace := func(err error) bool {
		return errors.Is(err, blockstore.ErrNoSpace) || errors.Is(err, blockstore.ErrClosed)
	}
	powerloss.RunFaults(t, 100, pebbleFiles, bestEffort, noSpace, func(seed uint64, fs *powerloss.FS) powerloss.Workload {
		return newBlockWorkload(t, seed, fs)
	})
}

// pebbleFiles tells the paths of the index's files.
func pebbleFiles(path string) bool { return strings.Contains(path, "/index") }

// bestEffort tells the operations the store may see fail without failing
// a call: those on the ballast, a reserve it does without.
func bestEffort(op errorfs.Op, _ error) bool { return path.Base(op.Path) == "ballast" }

// TestFailedRotationUsesUpItsID: a rotation whose new segment cannot be
// made durable (the directory's sync fails) and cannot be removed either
// leaves the file behind; once the fault is gone, the next rotation must
// take a new id rather than fail on that file.
func TestFailedRotationUsesUpItsID(t *testing.T) {
	ctx := t.Context()
	fs := powerloss.New(1)
	d, err := blockstore.Open(powerDir, powerOptions(fs))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r := rand.New(rand.NewPCG(1, 1))
	first := storetest.NewBlock(r, 40<<10)
	if err := d.Put(ctx, first); err != nil {
		t.Fatal(err)
	}
	fs.SetFault(func(op errorfs.Op) error {
		switch {
		case op.Kind == errorfs.OpFileSync && op.Path == path.Join(powerDir, "segments"),
			op.Kind == errorfs.OpRemove && strings.HasSuffix(op.Path, ".seg"):
			return powerloss.ErrIO
		}
		return nil
	})
	if err := d.Put(ctx, storetest.NewBlock(r, 40<<10)); err == nil {
		t.Fatal("Put into a segment whose creation failed: got nil, want an error")
	}
	fs.SetFault(nil)
	next := storetest.NewBlock(r, 40<<10)
	if err := d.Put(ctx, next); err != nil {
		t.Fatalf("Put after the fault is gone: %v", err)
	}
	for _, b := range []blockstore.Block{first, next} {
		if got, err := d.Get(ctx, b.CID); err != nil || !bytes.Equal(got, b.Data) {
			t.Fatalf("Get %s: %v", b.CID, err)
		}
	}
}

// TestFailedOpenClosesEachSegmentOnce: Open closes a dead segment (the
// empty active one of the last run) before removing it; when the removal
// fails, Open's error path must not close it again. Once the fault is
// gone, Open succeeds.
func TestFailedOpenClosesEachSegmentOnce(t *testing.T) {
	fs := powerloss.New(1)
	d, err := blockstore.Open(powerDir, powerOptions(fs))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	fs.SetFault(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpRemove && strings.HasSuffix(op.Path, ".seg") {
			return powerloss.ErrIO
		}
		return nil
	})
	if d, err := blockstore.Open(powerDir, powerOptions(fs)); err == nil {
		d.Close()
		t.Fatal("Open whose dead segment cannot be removed: got nil, want an error")
	}
	fs.SetFault(nil)
	d, err = blockstore.Open(powerDir, powerOptions(fs))
	if err != nil {
		t.Fatalf("Open after the fault is gone: %v", err)
	}
	d.Close()
}

// TestSegmentCheckOnFullDeviceIsNoSpace: a new segment's existence check
// failing with ENOSPC is the store's ErrNoSpace, as any other failure of
// a put for lack of space.
func TestSegmentCheckOnFullDeviceIsNoSpace(t *testing.T) {
	ctx := t.Context()
	fs := powerloss.New(1)
	d, err := blockstore.Open(powerDir, powerOptions(fs))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r := rand.New(rand.NewPCG(1, 2))
	if err := d.Put(ctx, storetest.NewBlock(r, 40<<10)); err != nil {
		t.Fatal(err)
	}
	fs.SetFault(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpStat && strings.HasSuffix(op.Path, ".seg") {
			return powerloss.ErrNoSpace
		}
		return nil
	})
	if err := d.Put(ctx, storetest.NewBlock(r, 40<<10)); !errors.Is(err, blockstore.ErrNoSpace) {
		t.Fatalf("Put whose new segment cannot be checked for lack of space: got %v, want ErrNoSpace", err)
	}
}
