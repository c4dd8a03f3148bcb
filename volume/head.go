package volume

import (
	"context"
	"fmt"
	"math/bits"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
)

// Head is the writable state of a disk on its owner: the committed block
// map plus the overlay of writes since. ReadAt and WriteAt are safe for
// concurrent use; a read sees every write that returned before it started.
// Writes are durable after Flush, and part of a root after a commit.
type Head struct {
	m         *Manager
	name      string
	size      int64
	blockSize int64
	levels    int
	sync      bool // flushes wait for the mesh (Config.SyncFlush)

	// commitMu serialises commits, restores and imports of this head.
	commitMu sync.Mutex

	// mu is held shared by reads, writes and flushes, which may run
	// concurrently, and exclusively by what changes the head's state as a
	// whole: commit's start and end, restore, removal, whole-block zeroing.
	// Lock order: mu, persistMu, stripes (ascending), bitsMu.
	mu      sync.RWMutex
	root    cid.Cid
	ov      *overlay
	removed bool
	// sealed refuses writes while the head is kept as a replica just
	// before its removal, so that the replica holds every write that
	// returned.
	sealed bool
	// stripes serialise writes to the same block (a partial write's
	// read-modify-write must not interleave with another write of that
	// block) and keep commit from reading a block a write is halfway
	// through. Block i uses stripes[i%len(stripes)].
	stripes [64]sync.Mutex
	// persistMu serialises Flush: two flushes writing bitmap pages from
	// different moments could otherwise leave the older on disk.
	persistMu sync.Mutex
	// bitsMu guards dirty, committing, dirtySince, lastWrite and the
	// overlay's bitmap while mu is held shared.
	bitsMu     sync.Mutex
	dirty      bitset // written since the last commit began
	committing bitset // being committed; still served from the overlay
	// dirtySince is when the oldest uncommitted write landed and
	// lastWrite when the newest did; zero when nothing is dirty.
	dirtySince, lastWrite time.Time
	// unpunched holds clean blocks whose overlay bytes are still their
	// committed content: a commit keeps the blocks it cleaned allocated
	// (and in the page cache) until the next commit or until the head has
	// been quiet for CommitInterval, so a block rewritten meanwhile lands
	// on allocated, cached pages, not in a hole the file system must fill
	// again after discarding it. Guarded like dirty.
	unpunched bitset
	// staleOverlay is set when punching committed blocks out of the
	// overlay failed: clean blocks may then hold stale bytes there, so
	// partial writes must always copy the committed block in. Reopening
	// the head punches again and clears it.
	staleOverlay bool
	// commitErr is why the last commit failed, "" once one succeeds:
	// disk info shows it (a full device, most often). Guarded by mu.
	commitErr string
}

// Name returns the disk's name.
func (h *Head) Name() string { return h.name }

// Size returns the disk's size in bytes.
func (h *Head) Size() int64 { return h.size }

// BlockSize returns the disk's block size in bytes.
func (h *Head) BlockSize() int64 { return h.blockSize }

func (h *Head) nblocks() int64 { return h.size / h.blockSize }

func (h *Head) checkRange(n int, off int64) error {
	if off < 0 || off+int64(n) > h.size || off+int64(n) < off {
		return fmt.Errorf("disk %q: range %d+%d outside %d bytes: %w", h.name, off, n, h.size, ErrInvalid)
	}
	if h.removed {
		return fmt.Errorf("disk %q: %w", h.name, ErrNotFound)
	}
	return nil
}

// checkWrite is checkRange for a write: a sealed head refuses it.
func (h *Head) checkWrite(n int, off int64) error {
	if err := h.checkRange(n, off); err != nil {
		return err
	}
	if h.sealed {
		return fmt.Errorf("disk %q is being removed: %w", h.name, ErrReadOnly)
	}
	return nil
}

// ReadAt reads len(p) bytes at off. Unwritten space reads as zeros.
func (h *Head) ReadAt(p []byte, off int64) (int, error) {
	return h.ReadAtContext(context.Background(), p, off)
}

// ReadAtContext is ReadAt with a context for block-store reads.
func (h *Head) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if _, err := h.read(ctx, p, off, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// ReadShared reads len(p) bytes at off and returns them as slices whose
// concatenation is the data, without copying committed blocks: those
// slices share the read cache's immutable memory (the caller must not
// modify them); the rest is read into p. A server replying with writev
// saves a copy of every byte.
func (h *Head) ReadShared(ctx context.Context, p []byte, off int64) ([][]byte, error) {
	reads, err := h.read(ctx, p, off, true)
	if err != nil {
		return nil, err
	}
	return readSlices(reads), nil
}

func (h *Head) read(ctx context.Context, p []byte, off int64, shared bool) ([]blockRead, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if err := h.checkRange(len(p), off); err != nil {
		return nil, err
	}
	reads := splitRead(p, off, h.blockSize, shared)
	inOverlay := make([]bool, len(reads))
	h.bitsMu.Lock()
	for k, r := range reads {
		inOverlay[k] = h.inOverlay(r.index)
	}
	h.bitsMu.Unlock()
	var committed []*blockRead
	for k := range reads {
		r := &reads[k]
		if !inOverlay[k] {
			committed = append(committed, r)
			continue
		}
		// The stripe keeps a write of this block from landing halfway
		// through the read: a read sees a write whole or not at all.
		unlock := h.lockBlocks(r.index, r.index)
		_, err := h.ov.data.ReadAt(r.dst, r.index*h.blockSize+r.inBlock)
		unlock()
		if err != nil {
			return nil, fmt.Errorf("disk %q: read overlay: %w", h.name, err)
		}
	}
	if len(committed) > 0 {
		if err := h.m.readCommittedBlocks(ctx, h.root, h.levels, committed); err != nil {
			return nil, fmt.Errorf("disk %q: %w", h.name, err)
		}
	}
	return reads, nil
}

// inOverlay reports whether block i is served from the overlay; the caller
// holds bitsMu or mu exclusively.
func (h *Head) inOverlay(i int64) bool { return h.dirty.get(i) || h.committing.get(i) }

// lockBlocks locks the stripes of blocks [first, last], each once, in
// ascending order, and returns the unlock.
func (h *Head) lockBlocks(first, last int64) func() {
	n := int64(len(h.stripes))
	if last-first+1 >= n {
		first, last = 0, n-1
	}
	var held []int
	for i := first; i <= last; i++ {
		held = append(held, int(i%n))
	}
	slices.Sort(held)
	held = slices.Compact(held)
	for _, k := range held {
		h.stripes[k].Lock()
	}
	return func() {
		for _, k := range held {
			h.stripes[k].Unlock()
		}
	}
}

// WriteAt writes p at off into the overlay. A partial write to a block not
// yet in the overlay first copies the committed block there.
func (h *Head) WriteAt(p []byte, off int64) (int, error) {
	return h.WriteAtContext(context.Background(), p, off)
}

// WriteAtContext is WriteAt with a context for block-store reads.
//
// Writes to different blocks proceed in parallel; writes to the same block
// are serialised.
func (h *Head) WriteAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	err := h.write(ctx, off, int64(len(p)), func() error { return h.ov.writeAt(p, off) })
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteFrom writes n bytes at off whose content fill puts into dst, the
// overlay's data file, at the same offset (off in dst is off on the disk),
// by any means: the NBD server splices a write's payload there from the
// client's socket, so the bytes never pass through user memory. fill runs
// with the blocks locked, after their old content is in place; an error
// from it fails the write (which may then be partly applied, like a torn
// write on a real disk) and a full file system is ErrNoSpace.
func (h *Head) WriteFrom(ctx context.Context, off, n int64, fill func(dst *os.File) error) error {
	return h.write(ctx, off, n, func() error {
		if err := fillFrom(h.ov.data, off, n, fill); err != nil {
			return fmt.Errorf("overlay: write at %d: %w", off, mapNoSpace(err))
		}
		return nil
	})
}

// write locks the blocks of [off, off+n), brings the partial ones' old
// content into the overlay, runs put and marks the blocks dirty.
func (h *Head) write(ctx context.Context, off, n int64, put func() error) error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if err := h.checkWrite(int(n), off); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	first, last := off/h.blockSize, (off+n-1)/h.blockSize
	unlock := h.lockBlocks(first, last)
	defer unlock()
	if err := h.m.floor.take(h.newSpace(first, last)); err != nil {
		return fmt.Errorf("disk %q: %w", h.name, err)
	}
	// Only the first and last blocks can be partial: bring their old
	// content into the overlay, then write the whole span in one call
	// (one pwrite per request, not one per block, is what keeps large
	// sequential writes at the speed of the page cache).
	for _, i := range []int64{first, last} {
		start, end := max(off, i*h.blockSize), min(off+n, (i+1)*h.blockSize)
		if err := h.prepareBlock(ctx, i, end-start); err != nil {
			return err
		}
		if first == last {
			break
		}
	}
	if err := put(); err != nil {
		return fmt.Errorf("disk %q: %w", h.name, err)
	}
	h.bitsMu.Lock()
	for i := first; i <= last; i++ {
		h.markDirty(i)
	}
	h.bitsMu.Unlock()
	return nil
}

// newSpace is how many bytes of the overlay file a write to blocks
// [first, last] may allocate: none if the overlay holds them all already.
func (h *Head) newSpace(first, last int64) int64 {
	h.bitsMu.Lock()
	defer h.bitsMu.Unlock()
	for i := first; i <= last; i++ {
		if !h.inOverlay(i) && !h.unpunched.get(i) {
			return (last - first + 1) * h.blockSize
		}
	}
	return 0
}

// prepareBlock makes the overlay hold the whole current content of block i
// before n bytes of it are overwritten (read-modify-write, once per block).
//
// The overlay region of a block not in the overlay is a hole (never
// written, or punched after its commit; see staleOverlay for when a punch
// fails), so a block that is zero in the map needs no copy at all: the
// hole already reads as zeros.
//
// The caller holds mu shared and block i's stripe.
func (h *Head) prepareBlock(ctx context.Context, i, n int64) error {
	if n == h.blockSize {
		return nil
	}
	h.bitsMu.Lock()
	in := h.inOverlay(i) || h.unpunched.get(i)
	h.bitsMu.Unlock()
	if in { // the overlay holds the block's current content
		return nil
	}
	c, err := h.m.maps.Lookup(ctx, h.root, h.levels, uint64(i))
	if err != nil {
		return fmt.Errorf("disk %q: block %d: %w", h.name, i, err)
	}
	if !c.Defined() && !h.staleOverlay {
		return nil
	}
	buf := make([]byte, h.blockSize)
	if err := h.m.readCommitted(ctx, h.root, h.levels, i, 0, buf); err != nil {
		return fmt.Errorf("disk %q: %w", h.name, err)
	}
	if err := h.ov.writeAt(buf, i*h.blockSize); err != nil {
		return fmt.Errorf("disk %q: %w", h.name, err)
	}
	return nil
}

// markDirty records that block i's data is in the overlay; the caller
// holds bitsMu or mu exclusively.
func (h *Head) markDirty(i int64) {
	now := h.m.cfg.Now()
	if h.dirtySince.IsZero() {
		h.dirtySince = now
	}
	h.lastWrite = now
	h.dirty.set(i)
	h.ov.set(i, true)
}

// Zero makes n bytes at off read as zeros. Whole blocks are punched out of
// the overlay and become absent from the map at the next commit, so they
// take no space; partial blocks are written with zeros.
func (h *Head) Zero(ctx context.Context, off, n int64) error {
	h.mu.Lock()
	if err := h.checkWrite(0, off); err != nil {
		h.mu.Unlock()
		return err
	}
	if off+n > h.size || n < 0 {
		h.mu.Unlock()
		return fmt.Errorf("disk %q: zero %d+%d outside %d bytes: %w", h.name, off, n, h.size, ErrInvalid)
	}
	first := (off + h.blockSize - 1) / h.blockSize
	last := (off + n) / h.blockSize // exclusive
	if first < last {
		if err := h.ov.zeroBlocks(first, last-first); err != nil {
			h.mu.Unlock()
			return fmt.Errorf("disk %q: %w", h.name, err)
		}
		for i := first; i < last; i++ {
			h.markDirty(i)
		}
	}
	h.mu.Unlock()
	var head, tail int64
	if first < last {
		head, tail = first*h.blockSize-off, off+n-last*h.blockSize
	} else {
		head = n
	}
	if head > 0 {
		if _, err := h.WriteAtContext(ctx, make([]byte, head), off); err != nil {
			return err
		}
	}
	if tail > 0 {
		if _, err := h.WriteAtContext(ctx, make([]byte, tail), last*h.blockSize); err != nil {
			return err
		}
	}
	return nil
}

// Flush makes every write that returned before it durable in the overlay.
// Reads and writes go on meanwhile.
func (h *Head) Flush(ctx context.Context) error {
	h.mu.RLock()
	if h.removed {
		h.mu.RUnlock()
		return fmt.Errorf("disk %q: %w", h.name, ErrNotFound)
	}
	err := h.persist()
	h.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("disk %q: flush: %w", h.name, err)
	}
	if !h.sync || h.m.cfg.SyncFlush == nil {
		return nil
	}
	// Sync mode: the data is acknowledged only once the mesh holds it, so
	// commit now and wait for the copies.
	info, err := h.m.Commit(ctx, h.name)
	if err != nil {
		return fmt.Errorf("disk %q: flush: %w", h.name, err)
	}
	if err := h.m.cfg.SyncFlush(ctx, h.name, info.Root); err != nil {
		return fmt.Errorf("disk %q: flush: %w", h.name, err)
	}
	return nil
}

// persist makes the overlay durable: it takes the bitmap's state under
// bitsMu, then syncs and writes outside it, so writes are not held up by
// the fsyncs. The caller holds mu (shared or exclusive).
func (h *Head) persist() error {
	h.persistMu.Lock()
	defer h.persistMu.Unlock()
	h.bitsMu.Lock()
	snap := h.ov.snapshot()
	h.bitsMu.Unlock()
	if err := h.ov.persistSnapshot(snap); err != nil {
		h.bitsMu.Lock()
		h.ov.retry(snap)
		h.bitsMu.Unlock()
		return err
	}
	return nil
}

// Commit turns the overlay into blocks and a new root; see Manager.Commit.
func (h *Head) Commit(ctx context.Context) error {
	_, err := h.m.Commit(ctx, h.name)
	return err
}

// commitDue reports whether a background commit should run now: the head
// is dirty and either its oldest write is maxAge old or it has been quiet
// for quiet.
func (h *Head) commitDue(now time.Time, maxAge, quiet time.Duration) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	h.bitsMu.Lock()
	defer h.bitsMu.Unlock()
	if h.dirtySince.IsZero() {
		return false
	}
	return now.Sub(h.dirtySince) >= maxAge || (quiet > 0 && now.Sub(h.lastWrite) >= quiet)
}

func (h *Head) dirtyCount() int64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	h.bitsMu.Lock()
	defer h.bitsMu.Unlock()
	return int64(h.dirty.count() + h.committing.countNotIn(h.dirty))
}

// bitset is a fixed-size set of block indexes.
type bitset []uint64

func newBitset(n int64) bitset { return make(bitset, (n+63)/64) }

func (b bitset) get(i int64) bool { return b[i/64]&(1<<(i%64)) != 0 }
func (b bitset) set(i int64)      { b[i/64] |= 1 << (i % 64) }
func (b bitset) clear(i int64)    { b[i/64] &^= 1 << (i % 64) }

func (b bitset) count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

func (b bitset) countNotIn(other bitset) int {
	n := 0
	for i, w := range b {
		n += bits.OnesCount64(w &^ other[i])
	}
	return n
}

// each calls fn for every member in ascending order.
func (b bitset) each(fn func(i int64)) {
	for wi, w := range b {
		for ; w != 0; w &= w - 1 {
			fn(int64(wi)*64 + int64(bits.TrailingZeros64(w)))
		}
	}
}
