// Package powerloss puts a store on a file system that loses power, for
// tests: a crashable in-memory file system (pebble's vfs.NewCrashableMem)
// seen through vfs/errorfs, which counts the operations that change it and,
// at seeded counts, takes a crash clone: a copy holding what was synced and,
// half of the time, a random part of what was not, as a real crash leaves a
// device. The same wrapper fails chosen operations with EIO or ENOSPC.
//
// A test drives one workload on FS; after each of its steps it calls Crashes
// and checks every clone taken meanwhile: it reopens the store on the
// clone and verifies every acknowledgement the workload recorded with an
// epoch <= the clone's Index (see Epoch). Acknowledgements and crash points
// are ordered by that epoch alone, so no lock is held across an operation.
package powerloss

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// PointsEnv asks for a longer run: the number of crash points each
// power-loss test takes (make torture sets it).
const PointsEnv = "WEFT_POWERLOSS_POINTS"

// SeedEnv replays a run: the seed its log printed.
const SeedEnv = "WEFT_POWERLOSS_SEED"

// logSeed returns $WEFT_POWERLOSS_SEED if set, else a fresh seed, and logs
// it.
func logSeed(t testing.TB) uint64 {
	t.Helper()
	seed := rand.Uint64()
	if s := os.Getenv(SeedEnv); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: want a number", SeedEnv, s)
		}
		seed = n
	}
	t.Logf("seed %d (replay with %s=%d)", seed, SeedEnv, seed)
	return seed
}

// pointsFor returns $WEFT_POWERLOSS_POINTS if set, else def.
func pointsFor(t testing.TB, def int) int {
	t.Helper()
	if s := os.Getenv(PointsEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", PointsEnv, s)
		}
		return n
	}
	return def
}

// Crash is a crash point: the file system as a power loss there left it.
type Crash struct {
	// Index numbers the crash points from 0. Every acknowledgement
	// recorded with an epoch <= Index returned before the clone was taken.
	Index int
	// Op is the count of changing operations before the crash.
	Op int64
	// Unsynced is the percentage of unsynced 4 KiB blocks and directory
	// entries the clone kept.
	Unsynced int
	// FS is the file system after the crash. Reopening the store on it
	// changes it, not the FS it was cloned from.
	FS vfs.FS
}

// FS is the file system a store runs on. It implements vfs.FS.
type FS struct {
	*errorfs.FS
	mem *vfs.MemFS

	ops   atomic.Int64 // changing operations so far
	taken atomic.Int64 // crash clones taken so far

	mu      sync.Mutex
	rng     *rand.Rand
	next    int64 // op count at which the next crash clone is taken; 0: none
	meanGap int
	left    int // crash points still to take
	pending []Crash
	fault   func(errorfs.Op) error
}

// New returns an empty file system whose crash points and kept unsynced
// data are drawn from seed.
func New(seed uint64) *FS {
	f := &FS{mem: vfs.NewCrashableMem(), rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	f.FS = errorfs.Wrap(f.mem, errorfs.InjectorFunc(f.maybeError))
	return f
}

// PlanCrashes arranges for n crash clones, one every 1..2*meanGap changing
// operations (uniformly), starting from now.
func (f *FS) PlanCrashes(n, meanGap int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.left, f.meanGap = n, max(meanGap, 1)
	f.next = 0
	if n > 0 {
		f.next = f.ops.Load() + 1 + int64(f.rng.IntN(2*f.meanGap))
	}
}

// Planned reports how many planned crash points are still to come.
func (f *FS) Planned() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.left
}

// Epoch is the epoch of an acknowledgement seen now: every crash clone with
// Index >= Epoch() is taken after this call, and so after the acknowledged
// operation returned.
func (f *FS) Epoch() int { return int(f.taken.Load()) }

// Ops returns the changing operations counted so far.
func (f *FS) Ops() int64 { return f.ops.Load() }

// Crashes returns the crash points taken since the last call, oldest first.
func (f *FS) Crashes() []Crash {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.pending
	f.pending = nil
	return out
}

// CrashNow takes a crash clone at once, keeping nothing unsynced.
func (f *FS) CrashNow() vfs.FS { return f.mem.CrashClone(vfs.CrashCloneCfg{}) }

// crashClone returns what a power loss leaves now: every synced directory
// entry and no other, and in each file its synced data plus unsynced
// percent of its unsynced 4 KiB blocks, chosen at random.
//
// vfs.CrashCloneCfg keeps unsynced directory entries at random too, in any
// order; a journaling file system (ext4, XFS) persists namespace changes
// in the order they were made, and Pebble (v2.1.7) relies on that: a clone
// that kept a new manifest marker but not the manifest it names does not
// open. So the files' contents come from a clone that keeps unsynced data,
// and the tree from one that keeps only what was synced.
func (f *FS) crashClone(percent int) *vfs.MemFS {
	synced := f.mem.CrashClone(vfs.CrashCloneCfg{})
	if percent == 0 {
		return synced
	}
	torn := f.mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: percent, RNG: rand.New(rand.NewPCG(f.rng.Uint64(), f.rng.Uint64()))})
	if err := copyContents(synced, torn, "/"); err != nil {
		panic(fmt.Sprintf("powerloss: build a crash clone: %v", err)) // in-memory: cannot fail
	}
	return synced
}

// copyContents gives every file under dir in dst the content of the same
// path in src, if src has it.
func copyContents(dst, src *vfs.MemFS, dir string) error {
	names, err := dst.List(dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		p := dst.PathJoin(dir, name)
		fi, err := dst.Stat(p)
		if err != nil {
			return err
		}
		if fi.IsDir() {
			if err := copyContents(dst, src, p); err != nil {
				return err
			}
			continue
		}
		data, err := src.UnsafeGetFileDataBuffer(p)
		if err != nil {
			continue // src lacks it
		}
		out, err := dst.Create(p, vfs.WriteCategoryUnspecified)
		if err != nil {
			return err
		}
		_, err = out.Write(append([]byte(nil), data...))
		if err = errors.Join(err, out.Sync(), out.Close()); err != nil {
			return err
		}
	}
	return nil
}

// SetFault makes every operation for which fault returns an error fail with
// it, instead of running; nil removes the fault.
func (f *FS) SetFault(fault func(errorfs.Op) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fault = fault
}

// Errors injected by faults. They wrap the errno a failing device returns,
// so errors.Is(err, syscall.ENOSPC) holds for the store's error too.
var (
	ErrIO      = fmt.Errorf("injected: %w", syscall.EIO)
	ErrNoSpace = fmt.Errorf("injected: %w", syscall.ENOSPC)
)

// Fault is a fault injected by InjectFault.
type Fault struct {
	// Err is the error the failing operations return.
	Err error

	mu    sync.Mutex
	fired []errorfs.Op
}

// Fired returns the operations the fault failed so far, oldest first.
func (ft *Fault) Fired() []errorfs.Op {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return slices.Clone(ft.fired)
}

// InjectFault makes a changing operation fail with EIO or ENOSPC (drawn
// from r) 1..30 changing operations from now, on a path exempt does not
// exempt: that operation alone, or every one from it on (always for ENOSPC:
// a full device stays full) until SetFault(nil).
func (f *FS) InjectFault(r *rand.Rand, exempt func(path string) bool) *Fault {
	ft := &Fault{Err: ErrIO}
	if r.IntN(2) == 0 {
		ft.Err = ErrNoSpace
	}
	persistent := errors.Is(ft.Err, syscall.ENOSPC) || r.IntN(2) == 0
	at := f.Ops() + 1 + int64(r.IntN(30))
	f.SetFault(func(op errorfs.Op) error {
		if op.Kind.ReadOrWrite() != errorfs.OpIsWrite || exempt(op.Path) || f.Ops() < at {
			return nil
		}
		ft.mu.Lock()
		defer ft.mu.Unlock()
		if len(ft.fired) > 0 && !persistent {
			return nil
		}
		ft.fired = append(ft.fired, op)
		return ft.Err
	})
	return ft
}

func (f *FS) maybeError(op errorfs.Op) error {
	f.mu.Lock()
	fault := f.fault
	f.mu.Unlock()
	if fault != nil {
		if err := fault(op); err != nil {
			return err
		}
	}
	if op.Kind.ReadOrWrite() != errorfs.OpIsWrite {
		return nil
	}
	n := f.ops.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.next == 0 || n < f.next {
		return nil
	}
	// The crash comes before operation n: the clone holds operations < n.
	// Its index is taken before the clone is: an operation of another
	// goroutine acknowledged while the clone is being made then reads an
	// Epoch past it, so the clone is not checked for what it may lack.
	c := Crash{Index: int(f.taken.Add(1) - 1), Op: n - 1}
	if f.rng.IntN(2) == 1 {
		c.Unsynced = 1 + f.rng.IntN(99)
	}
	c.FS = f.crashClone(c.Unsynced)
	f.pending = append(f.pending, c)
	f.left--
	f.next = 0
	if f.left > 0 {
		f.next = n + 1 + int64(f.rng.IntN(2*f.meanGap))
	}
	return nil
}
