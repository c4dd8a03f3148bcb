package volume_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/internal/powerloss"
	"github.com/weft-mesh/weft/volume"
)

// The power-loss disk: 32 blocks of 4 KiB, written in 512-byte sectors.
// Every sector a write touches gets the write's serial number in each of
// its 8-byte words, so a read tells which write each sector holds, and a
// block's state is the serial of each of its sectors.
const (
	plBS      = 4096
	plBlocks  = 32
	plSector  = 512
	plSectors = plBS / plSector
	plDisk    = "vm"
)

type sectorState [plSectors]uint64

// nodeDirs is where a power-loss node lives on its file system.
const (
	plBlocksDir  = "/node/blocks"
	plVolumesDir = "/node/volumes"
)

// plNode opens a block store and manager on fs: the block store on fs too
// if mem is nil (the test through both), else mem, which never loses
// anything (the test of the overlays and catalog alone).
func plNode(fs vfs.FS, mem blockstore.Store) (blockstore.Store, *volume.Manager, error) {
	store := mem
	if store == nil {
		o := blockstore.DefaultOptions()
		o.MinFreeBytes = 0
		o.SegmentSize = 64 << 10
		o.IndexCacheBytes = 1 << 20
		o.IndexMemTableBytes = 256 << 10
		o.FS = fs
		d, err := blockstore.Open(plBlocksDir, o)
		if err != nil {
			return nil, nil, fmt.Errorf("open block store: %w", err)
		}
		store = d
	}
	cfg := volume.DefaultConfig()
	cfg.Dir, cfg.Store, cfg.FS = plVolumesDir, store, fs
	cfg.CommitInterval, cfg.BlockCacheBytes = 0, 0
	m, err := volume.Open(context.Background(), cfg)
	if err != nil {
		if mem == nil {
			store.Close()
		}
		return nil, nil, fmt.Errorf("open volumes: %w", err)
	}
	return store, m, nil
}

// volAck is an acknowledged flush (or commit, or clean close): every
// block held at least the state hist[i][at[i]] from then on.
type volAck struct {
	epoch int
	at    [plBlocks]int
}

// failedState is the state a failed write would have given a block, and
// its index in the block's history.
type failedState struct {
	state sectorState
	at    int
}

// volReplica is an acknowledged replica and its exact content.
type volReplica struct {
	name  string
	epoch int
	state [plBlocks]sectorState
}

// volWorkload writes, zeroes, flushes, commits, takes and removes
// replicas, collects garbage and restarts, one step at a time.
type volWorkload struct {
	t      *testing.T
	r      *rand.Rand
	fs     *powerloss.FS
	mem    blockstore.Store // nil: the block store is on fs
	store  blockstore.Store
	m      *volume.Manager
	serial uint64
	// hist[i] is every state block i has had, oldest first.
	hist [plBlocks][]sectorState
	// failed[i] holds the states of writes to block i that failed: each
	// may or may not have landed, and stays allowed until a later write
	// to the block succeeds and is flushed.
	failed   [plBlocks][]failedState
	acks     []volAck
	replicas []volReplica
	removed  map[string]bool
	failures int
	// broken is set by a failed Close: the workload stops.
	broken bool
}

func newVolWorkload(t *testing.T, seed uint64, fs *powerloss.FS, mem blockstore.Store) *volWorkload {
	w := &volWorkload{t: t, r: rand.New(rand.NewPCG(seed, 3)), fs: fs, mem: mem, removed: map[string]bool{}}
	for i := range w.hist {
		w.hist[i] = []sectorState{{}}
	}
	var err error
	if w.store, w.m, err = plNode(fs, mem); err != nil {
		t.Fatal(err)
	}
	if _, err := w.m.CreateDisk(t.Context(), volume.DiskSpec{Name: plDisk, Size: plBS * plBlocks, BlockSize: plBS}); err != nil {
		t.Fatalf("CreateDisk: %v", err)
	}
	w.ack()
	return w
}

func (w *volWorkload) Close() {
	if w.m != nil {
		w.m.Close()
	}
	if w.mem == nil && w.store != nil {
		w.store.Close()
	}
	w.m, w.store = nil, nil
}

func (w *volWorkload) current() [plBlocks]sectorState {
	var s [plBlocks]sectorState
	for i := range s {
		s[i] = w.hist[i][len(w.hist[i])-1]
	}
	return s
}

// ack records that every write so far is durable.
func (w *volWorkload) ack() {
	a := volAck{epoch: w.fs.Epoch()}
	for i := range a.at {
		a.at[i] = len(w.hist[i]) - 1
	}
	w.acks = append(w.acks, a)
}

// Step runs one operation. A failure fails t unless faulty is set (an
// injected fault may cause it); then it is returned.
func (w *volWorkload) Step(ctx context.Context, faulty bool) error {
	fail := func(what string, err error) error {
		if !faulty {
			w.t.Fatalf("%s: %v", what, err)
		}
		w.failures++
		return err
	}
	if w.broken {
		return powerloss.ErrStopped
	}
	if w.m == nil {
		var err error
		if w.store, w.m, err = plNode(w.fs, w.mem); err != nil {
			return fail("reopen", err)
		}
	}
	h, err := w.m.Head(plDisk)
	if err != nil {
		return fail("Head", err)
	}
	switch k := w.r.IntN(40); {
	case k < 22:
		return w.write(ctx, h, fail)
	case k < 24:
		first, n := w.r.IntN(plBlocks), 1+w.r.IntN(3)
		n = min(n, plBlocks-first)
		for i := first; i < first+n; i++ {
			w.hist[i] = append(w.hist[i], sectorState{})
		}
		if err := h.Zero(ctx, int64(first)*plBS, int64(n)*plBS); err != nil {
			w.undo(first, first+n)
			return fail("Zero", err)
		}
	case k < 31:
		if err := h.Flush(ctx); err != nil {
			return fail("Flush", err)
		}
		w.ack()
	case k < 34:
		if _, err := w.m.Commit(ctx, plDisk); err != nil {
			return fail("Commit", err)
		}
		w.ack()
	case k < 36:
		name := fmt.Sprintf("r%d", w.serial)
		w.serial++
		state := w.current()
		if _, err := w.m.CreateReplica(ctx, plDisk, name); err != nil {
			return fail("CreateReplica", err)
		}
		w.ack() // a replica commits the head first
		w.replicas = append(w.replicas, volReplica{name: name, epoch: w.fs.Epoch(), state: state})
	case k < 37:
		if i := slices.IndexFunc(w.replicas, func(r volReplica) bool { return !w.removed[r.name] }); i >= 0 {
			w.removed[w.replicas[i].name] = true
			if err := w.m.RemoveReplica(ctx, plDisk, w.replicas[i].name); err != nil {
				return fail("RemoveReplica", err)
			}
		}
	case k < 39:
		if _, err := w.m.GC(ctx); err != nil {
			return fail("GC", err)
		}
	default:
		err := w.m.Close()
		if w.mem == nil {
			err = errors.Join(err, w.store.Close())
		}
		w.m, w.store = nil, nil
		if err != nil {
			// Writes not yet flushed may or may not have survived, as after
			// a crash, and later writes would build on either: stop here.
			w.broken = true
			return fail("Close", err)
		}
		w.ack() // Close commits every head
	}
	return nil
}

// write writes a random sector-aligned span, within one block or across
// several, with a new serial.
func (w *volWorkload) write(ctx context.Context, h *volume.Head, fail func(string, error) error) error {
	w.serial++
	v := w.serial
	first := w.r.IntN(plBlocks * plSectors)
	n := 1 + w.r.IntN(plSectors)
	if w.r.IntN(4) == 0 {
		n = 1 + w.r.IntN(3*plSectors)
	}
	n = min(n, plBlocks*plSectors-first)
	buf := make([]byte, n*plSector)
	for i := 0; i < len(buf); i += 8 {
		binary.LittleEndian.PutUint64(buf[i:], v)
	}
	for s := first; s < first+n; {
		b := s / plSectors
		st := w.hist[b][len(w.hist[b])-1]
		for ; s < first+n && s/plSectors == b; s++ {
			st[s%plSectors] = v
		}
		w.hist[b] = append(w.hist[b], st)
	}
	if _, err := h.WriteAtContext(ctx, buf, int64(first)*plSector); err != nil {
		w.undo(first/plSectors, (first+n-1)/plSectors+1)
		return fail("WriteAt", err)
	}
	return nil
}

// undo handles a failed write to blocks [first, last) whose new states are
// the last of their histories: each may or may not have landed, so it stays
// allowed, and the block's current state is the one before it.
func (w *volWorkload) undo(first, last int) {
	for b := first; b < last; b++ {
		n := len(w.hist[b])
		w.failed[b] = append(w.failed[b], failedState{state: w.hist[b][n-1], at: n - 1})
		w.hist[b] = append(w.hist[b], w.hist[b][n-2])
	}
}

// readState reads the states of all blocks of r, failing on a sector that
// does not hold one write's serial throughout.
func readState(r interface {
	ReadAt(p []byte, off int64) (int, error)
}) ([plBlocks]sectorState, error) {
	var out [plBlocks]sectorState
	buf := make([]byte, plBS*plBlocks)
	if _, err := r.ReadAt(buf, 0); err != nil {
		return out, err
	}
	for s := range plBlocks * plSectors {
		sec := buf[s*plSector : (s+1)*plSector]
		v := binary.LittleEndian.Uint64(sec)
		for i := 8; i < plSector; i += 8 {
			if binary.LittleEndian.Uint64(sec[i:]) != v {
				return out, fmt.Errorf("sector %d (block %d) is torn or foreign: starts with serial %d, holds %d at byte %d",
					s, s/plSectors, v, binary.LittleEndian.Uint64(sec[i:]), i)
			}
		}
		out[s/plSectors][s%plSectors] = v
	}
	return out, nil
}

// allowed reports whether block i may hold st after the acknowledgement
// floor: the state of the last flush or a later write, or that of a failed
// write no successful write to the block followed before the flush.
func (w *volWorkload) allowed(i int, floor volAck, st sectorState) bool {
	if slices.Contains(w.hist[i][floor.at[i]:], st) {
		return true
	}
	// In the history a failed write's state is followed by the one before
	// it, put back: neither is a write that succeeded.
	notWritten := map[int]bool{}
	for _, f := range w.failed[i] {
		notWritten[f.at], notWritten[f.at+1] = true, true
	}
	for _, f := range w.failed[i] {
		if f.state != st {
			continue
		}
		overwritten := false
		for j := f.at + 1; j <= floor.at[i]; j++ {
			overwritten = overwritten || !notWritten[j]
		}
		if !overwritten {
			return true
		}
	}
	return false
}

// Check opens the node on fs and verifies, for the acknowledgements of
// epoch <= upTo, that every block holds the state of the last one or a
// later write, and that every acknowledged replica reads back exactly. It
// returns the acknowledged flushes covered.
func (w *volWorkload) Check(ctx context.Context, fs vfs.FS, upTo int, what string) int {
	w.t.Helper()
	store, m, err := plNode(fs, w.mem)
	if err != nil {
		w.t.Fatalf("%s: reopen: %v", what, err)
	}
	defer func() {
		m.Close()
		if w.mem == nil {
			store.Close()
		}
	}()
	h, err := m.Head(plDisk)
	if err != nil {
		w.t.Fatalf("%s: %v", what, err)
	}
	got, err := readState(h)
	if err != nil {
		w.t.Fatalf("%s: head: %v", what, err)
	}
	n := 0
	for n < len(w.acks) && w.acks[n].epoch <= upTo {
		n++
	}
	floor := w.acks[n-1]
	for i := range plBlocks {
		if !w.allowed(i, floor, got[i]) {
			w.t.Fatalf("%s: block %d holds sectors %v; last flushed %v, written since %v, failed writes %v",
				what, i, got[i], w.hist[i][floor.at[i]], w.hist[i][floor.at[i]+1:], w.failed[i])
		}
	}
	for _, r := range w.replicas {
		if r.epoch > upTo || w.removed[r.name] {
			continue
		}
		v, err := m.OpenView(ctx, volume.Ref{Disk: plDisk, Replica: r.name})
		if err != nil {
			w.t.Fatalf("%s: acknowledged replica %s: %v", what, r.name, err)
		}
		got, err := readState(v)
		v.Close()
		if err != nil {
			w.t.Fatalf("%s: replica %s: %v", what, r.name, err)
		}
		if got != r.state {
			w.t.Fatalf("%s: replica %s reads %v, want %v as taken", what, r.name, got, r.state)
		}
	}
	return n
}

// TestPowerLoss runs writes, zeroing, flushes, commits, replicas, GC and
// restarts of a disk head whose overlay and catalog are on a file system
// that loses power at hundreds of seeded points (the blocks in a store
// that loses nothing): after each, the node must reopen, every block must
// hold its state as of the last acknowledged flush or a later write, and
// every acknowledged replica must read back exactly.
func TestPowerLoss(t *testing.T) {
	runVolCrashes(t, blockstore.NewMemory())
}

// TestPowerLossWithBlockStore is TestPowerLoss with the block store on the
// same file system: one power loss hits the overlays, the catalog, the
// segments and the index at the same moment.
func TestPowerLossWithBlockStore(t *testing.T) {
	runVolCrashes(t, nil)
}

func runVolCrashes(t *testing.T, mem blockstore.Store) {
	// A fresh node every 50 crash points keeps the histories short.
	powerloss.RunCrashes(t, 100, 50, 10, func(seed uint64, fs *powerloss.FS) powerloss.Workload {
		return newVolWorkload(t, seed, fs, mem)
	})
}

// TestPowerLossFaults fails one seeded operation on the overlays, the
// catalog or the block store's segments with EIO or ENOSPC, goes on for a
// while, then loses power: every failure must be an error (ErrNoSpace for
// ENOSPC), nothing may panic, and once the fault is gone every
// acknowledged flush and replica must read back, after a restart and
// after a power loss. Pebble's own files get no faults (see the block
// store's TestPowerLossFaults).
func TestPowerLossFaults(t *testing.T) {
	pebbleFiles := func(path string) bool { return strings.Contains(path, "/index") }
	noSpace := func(err error) bool { return errors.Is(err, volume.ErrNoSpace) }
	// Best effort: the block store's ballast, a reserve it does without;
	// the removal of a temporary file already renamed; and ENOSPC on the
	// block store's files, which Close absorbs (a full device does not
	// fail a shutdown: the head stays in its overlay, see Manager.Close).
	bestEffort := func(op errorfs.Op, err error) bool {
		return path.Base(op.Path) == "ballast" ||
			op.Kind == errorfs.OpRemove && strings.Contains(path.Base(op.Path), ".tmp") ||
			strings.HasPrefix(op.Path, plBlocksDir+"/") && errors.Is(err, syscall.ENOSPC)
	}
	powerloss.RunFaults(t, 100, pebbleFiles, bestEffort, noSpace, func(seed uint64, fs *powerloss.FS) powerloss.Workload {
		return newVolWorkload(t, seed, fs, nil)
	})
}

// plHead opens a node on fs (see plNode) with a new disk and returns its
// head; the manager is closed when the test ends.
func plHead(t *testing.T, fs vfs.FS, mem blockstore.Store) (*volume.Manager, *volume.Head) {
	t.Helper()
	_, m, err := plNode(fs, mem)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if _, err := m.CreateDisk(t.Context(), volume.DiskSpec{Name: plDisk, Size: plBS * plBlocks, BlockSize: plBS}); err != nil {
		t.Fatal(err)
	}
	h, err := m.Head(plDisk)
	if err != nil {
		t.Fatal(err)
	}
	return m, h
}

// plReopen opens a node on fs as after a crash (see plNode) and reads the
// first n bytes of its disk; the manager is closed when the test ends.
func plReopen(t *testing.T, fs vfs.FS, mem blockstore.Store, n int) (*volume.Manager, *volume.Head, []byte) {
	t.Helper()
	_, m, err := plNode(fs, mem)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	h, err := m.Head(plDisk)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, n)
	if _, err := h.ReadAt(got, 0); err != nil {
		t.Fatalf("read the reopened disk: %v", err)
	}
	return m, h, got
}

// plBlock is a block whose every byte is v.
func plBlock(v byte) []byte { return bytes.Repeat([]byte{v}, plBS) }

// TestCommitAfterFailedClearingKeepsRoot: a commit publishes its root, then
// fails to persist the cleared bits of the blocks it stored (ENOSPC on the
// bitmap), and the next commit has nothing to do and succeeds. The bits
// still set on disk make the overlay win over the root after a power loss,
// so the overlay must hold durably what the root does: the commit syncs it
// before storing. (Found by TestPowerLossFaults: the overlay's older synced
// bytes came back.)
func TestCommitAfterFailedClearingKeepsRoot(t *testing.T) {
	ctx := t.Context()
	fs := powerloss.New(1)
	mem := blockstore.NewMemory()
	m, h := plHead(t, fs, mem)
	if _, err := h.WriteAt(plBlock(1), 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt(plBlock(2), 0); err != nil { // not flushed
		t.Fatal(err)
	}
	fs.SetFault(func(op errorfs.Op) error {
		if op.Kind.ReadOrWrite() == errorfs.OpIsWrite && strings.HasSuffix(op.Path, "/dirty") {
			return powerloss.ErrNoSpace
		}
		return nil
	})
	if _, err := m.Commit(ctx, plDisk); !errors.Is(err, volume.ErrNoSpace) {
		t.Fatalf("Commit with the bitmap's device full: got %v, want ErrNoSpace", err)
	}
	if _, err := m.Commit(ctx, plDisk); err != nil {
		t.Fatalf("Commit with nothing left to commit: %v", err)
	}
	// Acknowledged: block 0 holds 2 from now on.
	crashed := fs.CrashNow()
	fs.SetFault(nil)
	_, _, got := plReopen(t, crashed, mem, plBS)
	if got[0] != 2 || !bytes.Equal(got, plBlock(2)) {
		t.Fatalf("block 0 after power loss holds %d..., want 2 (committed and acknowledged)", got[0])
	}
}

// TestGCKeepsRootOfFailedCatalogSave: a commit's catalog save renames the
// new catalog into place and then fails to sync the directory, so the
// commit fails while the file on disk names the new root. GC must keep
// that root's blocks: the next start reads it. (Found by
// TestPowerLossFaults: a map node of the root on disk had been swept.)
// A later save that fails before its rename leaves that file on disk:
// GC keeps the roots of every failed save since the last good one.
func TestGCKeepsRootOfFailedCatalogSave(t *testing.T) {
	ctx := t.Context()
	fs := powerloss.New(2)
	mem := blockstore.NewMemory()
	m, h := plHead(t, fs, mem)
	if _, err := h.WriteAt(plBlock(1), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Commit(ctx, plDisk); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt(plBlock(2), plBS); err != nil {
		t.Fatal(err)
	}
	fs.SetFault(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileSync && op.Path == plVolumesDir {
			return powerloss.ErrIO
		}
		return nil
	})
	if _, err := m.Commit(ctx, plDisk); err == nil {
		t.Fatal("Commit whose catalog directory cannot be synced: got nil, want an error")
	}
	// A second save fails before its rename: the file on disk is still
	// the first failed one's, whose roots GC must keep as well.
	if _, err := h.WriteAt(plBlock(3), 2*plBS); err != nil {
		t.Fatal(err)
	}
	fs.SetFault(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpCreate && strings.HasPrefix(path.Base(op.Path), ".catalog.json.tmp") {
			return powerloss.ErrNoSpace
		}
		return nil
	})
	if _, err := m.Commit(ctx, plDisk); err == nil {
		t.Fatal("Commit whose catalog cannot be created: got nil, want an error")
	}
	fs.SetFault(nil)
	if _, err := m.GC(ctx); err != nil {
		t.Fatal(err)
	}
	// The process dies; the next one reads the catalog on disk.
	_, _, got := plReopen(t, fs, mem, 2*plBS)
	if !bytes.Equal(got, append(plBlock(1), plBlock(2)...)) {
		t.Fatalf("blocks 0 and 1 start with %d and %d, want 1 and 2", got[0], got[plBS])
	}
}

// TestWriteFromOffTheOSFileSystem: on a file system without OS files, a
// WriteFrom's fill writes into a scratch file whose bytes land in the
// overlay (the NBD server splices into it on the OS's).
func TestWriteFromOffTheOSFileSystem(t *testing.T) {
	_, h := plHead(t, powerloss.New(3), blockstore.NewMemory())
	data := append(plBlock(7)[:plSector], plBlock(8)[:2*plSector]...)
	off := int64(plBS - plSector) // across a block boundary
	err := h.WriteFrom(t.Context(), off, int64(len(data)), func(dst *os.File) error {
		_, err := dst.WriteAt(data, off)
		return err
	})
	if err != nil {
		t.Fatalf("WriteFrom: %v", err)
	}
	got := make([]byte, len(data))
	if _, err := h.ReadAt(got, off); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read back %d..%d, want what WriteFrom's fill wrote", got[0], got[len(got)-1])
	}
}

// TestPowerLossCheckRejectsOverwrittenFailedWrite: the check accepts the
// state of a failed write only until a later write to the block succeeds
// and is flushed; after that, a block holding it (say, reverted to zeros
// by a power loss) lost an acknowledged flush.
func TestPowerLossCheckRejectsOverwrittenFailedWrite(t *testing.T) {
	var failed, written sectorState
	failed[0], written[0] = 1, 2
	w := &volWorkload{}
	for i := range w.hist {
		w.hist[i] = []sectorState{{}}
	}
	// Block 1: a write of 1 that fails, a write of 2 that succeeds, a flush.
	w.hist[1] = append(w.hist[1], failed)
	w.undo(1, 2)
	w.hist[1] = append(w.hist[1], written)
	floor := volAck{at: [plBlocks]int{1: len(w.hist[1]) - 1}}
	if !w.allowed(1, floor, written) {
		t.Fatal("the flushed write's state rejected")
	}
	if w.allowed(1, floor, failed) {
		t.Fatal("the failed write's state accepted after a later write was flushed")
	}
	// Block 2: a write of 1 that fails, then a flush: it may have landed.
	w.hist[2] = append(w.hist[2], failed)
	w.undo(2, 3)
	if !w.allowed(2, volAck{at: [plBlocks]int{2: len(w.hist[2]) - 1}}, failed) {
		t.Fatal("a failed write's state rejected with no write after it")
	}
}
