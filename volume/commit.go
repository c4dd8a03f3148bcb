package volume

import (
	"context"
	"fmt"
	"runtime"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockmap"
	"github.com/weft-mesh/weft/blockstore"
)

// putBatch is how many blocks a hashing worker hands to the store at once:
// enough to amortise the store's fsync, small enough to bound memory.
const putBatch = 32

// Commit turns a disk's dirty blocks into stored blocks and a new root, and
// records the root in the catalog. Blocks are hashed on every core; zero
// blocks are dropped from the map, never stored. Writes may continue during
// a commit: whatever they touch stays dirty for the next one.
func (m *Manager) Commit(ctx context.Context, disk string) (DiskInfo, error) {
	h, err := m.Head(disk)
	if err != nil {
		return DiskInfo{}, err
	}
	h.commitMu.Lock()
	err = m.commitLocked(ctx, h, nil)
	h.commitMu.Unlock()
	if err != nil {
		return DiskInfo{}, err
	}
	return m.DiskInfo(ctx, disk)
}

// commitLocked commits h, whose commitMu the caller holds. publish, if not
// nil, runs under m.mu with the new root just before the catalog is saved,
// so that what it records (a replica, say) is atomic with the commit.
func (m *Manager) commitLocked(ctx context.Context, h *Head, publish func(root cid.Cid) error) error {
	h.mu.Lock()
	if h.removed {
		h.mu.Unlock()
		return fmt.Errorf("disk %q: %w", h.name, ErrNotFound)
	}
	var list []int64
	h.dirty.each(func(i int64) {
		list = append(list, i)
		h.committing.set(i)
	})
	clear(h.dirty)
	oldRoot := h.root
	h.mu.Unlock()

	if len(list) == 0 && publish == nil {
		return nil
	}
	m.gcMu.RLock()
	defer m.gcMu.RUnlock()
	newRoot, err := m.storeBlocks(ctx, h, oldRoot, list)
	if err == nil {
		err = m.publishRoot(h, newRoot, len(list) > 0, publish)
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		// Nothing was published: the blocks stay dirty for the next try.
		for _, i := range list {
			h.committing.clear(i)
			h.dirty.set(i)
		}
		return fmt.Errorf("commit disk %q: %w", h.name, err)
	}
	h.root = newRoot
	var clean []int64
	for _, i := range list {
		h.committing.clear(i)
		if !h.dirty.get(i) {
			h.ov.set(i, false)
			clean = append(clean, i)
		}
	}
	// The bitmap must say "clean" durably before the overlay copy is
	// punched, or a crash could serve a punched block as zeros.
	if err := h.ov.persist(); err != nil {
		return fmt.Errorf("commit disk %q: %w", h.name, err)
	}
	for _, i := range clean {
		if err := h.ov.zeroBlocks(i, 1); err != nil {
			return fmt.Errorf("commit disk %q: %w", h.name, err)
		}
	}
	return nil
}

// storeBlocks hashes and stores the listed overlay blocks and returns the
// root of the map with them applied.
func (m *Manager) storeBlocks(ctx context.Context, h *Head, root cid.Cid, list []int64) (cid.Cid, error) {
	if len(list) == 0 {
		return root, nil
	}
	changes := make([]blockmap.Change, len(list))
	work := make(chan int, len(list))
	for k := range list {
		work <- k
	}
	close(work)
	workers := min(runtime.GOMAXPROCS(0), (len(list)+putBatch-1)/putBatch)
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = m.storeWorker(ctx, h, list, work, changes)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return cid.Undef, err
		}
	}
	return m.maps.Update(ctx, root, h.levels, changes)
}

func (m *Manager) storeWorker(ctx context.Context, h *Head, list []int64, work <-chan int, changes []blockmap.Change) error {
	batch := newBlockBatch(m.store, putBatch, int(h.blockSize))
	for k := range work {
		if err := ctx.Err(); err != nil {
			return err
		}
		i := list[k]
		buf := batch.buffer()
		h.mu.RLock()
		err := h.ov.readBlock(i, buf)
		h.mu.RUnlock()
		if err != nil {
			return err
		}
		changes[k] = blockmap.Change{Index: uint64(i), CID: batch.add(buf)}
		if err := batch.flushIfFull(ctx); err != nil {
			return err
		}
	}
	return batch.flush(ctx)
}

// blockBatch hashes blocks and puts them in the store in batches, reusing
// its buffers. Zero blocks are recognised and never stored.
type blockBatch struct {
	store  blockstore.Putter
	blocks []blockstore.Block
	bufs   [][]byte
}

func newBlockBatch(store blockstore.Putter, n, blockSize int) *blockBatch {
	b := &blockBatch{store: store, bufs: make([][]byte, n)}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, blockSize)
	}
	return b
}

// buffer returns a block-sized buffer to fill and pass to add.
func (b *blockBatch) buffer() []byte { return b.bufs[len(b.blocks)] }

// add queues the filled buffer and returns its CID, or cid.Undef if it is
// all zeros.
func (b *blockBatch) add(buf []byte) cid.Cid {
	if isZero(buf) {
		return cid.Undef
	}
	blk := blockstore.NewBlock(blockstore.CodecRaw, buf)
	b.blocks = append(b.blocks, blk)
	return blk.CID
}

func (b *blockBatch) flushIfFull(ctx context.Context) error {
	if len(b.blocks) < len(b.bufs) {
		return nil
	}
	return b.flush(ctx)
}

func (b *blockBatch) flush(ctx context.Context) error {
	if len(b.blocks) == 0 {
		return nil
	}
	err := b.store.PutMany(ctx, b.blocks)
	b.blocks = b.blocks[:0]
	if err != nil {
		return fmt.Errorf("store blocks: %w", err)
	}
	return nil
}

func isZero(p []byte) bool {
	for len(p) >= 8 && p[0]|p[1]|p[2]|p[3]|p[4]|p[5]|p[6]|p[7] == 0 {
		p = p[8:]
	}
	for _, c := range p {
		if c != 0 {
			return false
		}
	}
	return true
}

// publishRoot records h's new root in the catalog (if changed) together
// with whatever publish adds, and saves the catalog.
func (m *Manager) publishRoot(h *Head, root cid.Cid, changed bool, publish func(cid.Cid) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.cat.Disks[h.name]
	if !ok || m.heads[h.name] != h {
		return fmt.Errorf("disk %q: %w", h.name, ErrNotFound)
	}
	snapshot := m.cat.clone()
	if changed {
		rec.Root = rootString(root)
		rec.Committed = m.cfg.Now().UTC()
	}
	if publish != nil {
		if err := publish(root); err != nil {
			m.cat = snapshot
			return err
		}
	}
	if err := m.cat.save(m.cfg.Dir); err != nil {
		m.cat = snapshot
		return err
	}
	return nil
}
