package volume

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockmap"
	"github.com/weft-mesh/weft/blockstore"
)

// importBatchBytes is how much an import worker hands the store at once.
// An import is one long stream, so it pays to amortise the store's fsyncs
// over much more than a commit does; the cost is the memory of the
// buffers in flight (workers x batch).
const importBatchBytes = 16 << 20

// Import makes r the content of a disk: it creates the disk (with
// spec.BlockSize and spec.Replicas, sized to the input rounded up to the
// block size) if absent, and otherwise replaces the disk's content, the
// rest reading as zeros. Input longer than an existing disk is refused with
// ErrInvalid before anything changes. spec.Size is ignored.
//
// Blocks are hashed and stored on every core as they stream in, zero blocks
// are skipped, and the map is built once at the end: the head changes only
// when the whole input is in.
func (m *Manager) Import(ctx context.Context, spec DiskSpec, r io.Reader) (DiskInfo, error) {
	if err := ValidateName(spec.Name); err != nil {
		return DiskInfo{}, err
	}
	h, err := m.Head(spec.Name)
	switch {
	case err == nil:
		spec.Size, spec.BlockSize = h.size, h.blockSize
		h.commitMu.Lock()
		defer h.commitMu.Unlock()
	case errors.Is(err, ErrNotFound):
		spec.Size = 1 // checked for real once the input's length is known
		if spec, err = checkSpec(spec); err != nil {
			return DiskInfo{}, err
		}
	default:
		return DiskInfo{}, err
	}
	limit := int64(-1)
	if h != nil {
		limit = h.size
	}

	m.gcMu.RLock()
	defer m.gcMu.RUnlock()
	changes, total, err := m.importBlocks(ctx, r, spec.BlockSize, limit)
	if err != nil {
		return DiskInfo{}, fmt.Errorf("import %q: %w", spec.Name, err)
	}
	if h == nil {
		spec.Size = max(total, 1)
		if spec, err = checkSpec(spec); err != nil {
			return DiskInfo{}, err
		}
	}
	nblocks := uint64(spec.Size / spec.BlockSize)
	root, err := m.maps.Update(ctx, cid.Undef, blockmap.Levels(nblocks), changes)
	if err != nil {
		return DiskInfo{}, fmt.Errorf("import %q: %w", spec.Name, err)
	}
	if h == nil {
		return m.createDisk(ctx, spec, root)
	}
	err = m.publishRoot(h, root, false, func(root cid.Cid) error {
		rec := m.cat.Disks[h.name]
		rec.Root = rootString(root)
		rec.Committed = m.cfg.Now().UTC()
		return nil
	})
	if err != nil {
		return DiskInfo{}, fmt.Errorf("import %q: %w", spec.Name, err)
	}
	if err := h.reset(root); err != nil {
		return DiskInfo{}, err
	}
	return m.DiskInfo(ctx, spec.Name)
}

// importBlocks reads r to the end in blocks, storing the non-zero ones, and
// returns the map changes and the number of bytes read. limit >= 0 bounds
// the input's length.
//
// The reader fills whole batches of consecutive blocks and hands each to
// a worker, which hashes it and stores it in one durable PutMany. Workers
// start at staggered times, so while one waits for its fsync the others
// hash: the device and the cores stay busy together.
func (m *Manager) importBlocks(ctx context.Context, r io.Reader, blockSize, limit int64) ([]blockmap.Change, int64, error) {
	type batch struct {
		first int64 // index of the first block
		bufs  [][]byte
		n     int // blocks filled
	}
	workers := runtime.GOMAXPROCS(0) + 2
	batchBlocks := int(max(1, importBatchBytes/blockSize))
	free := make(chan *batch, workers+2)
	for range cap(free) {
		b := &batch{bufs: make([][]byte, batchBlocks)}
		for i := range b.bufs {
			b.bufs[i] = make([]byte, blockSize)
		}
		free <- b
	}
	work := make(chan *batch)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var mu sync.Mutex
	var changes []blockmap.Change
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var blocks []blockstore.Block
			var local []blockmap.Change
			for b := range work {
				blocks = blocks[:0]
				for i, buf := range b.bufs[:b.n] {
					if isZero(buf) {
						continue
					}
					blk := blockstore.NewBlock(blockstore.CodecRaw, buf)
					blocks = append(blocks, blk)
					local = append(local, blockmap.Change{Index: uint64(b.first) + uint64(i), CID: blk.CID})
				}
				if len(blocks) > 0 && ctx.Err() == nil {
					if err := m.store.PutMany(ctx, blocks); err != nil {
						cancel(fmt.Errorf("store blocks: %w", err))
					}
				}
				free <- b
			}
			mu.Lock()
			changes = append(changes, local...)
			mu.Unlock()
		}()
	}

	total, readErr := func() (int64, error) {
		defer close(work)
		var total int64
		for index := int64(0); ; {
			var b *batch
			select {
			case b = <-free:
			case <-ctx.Done():
				return total, context.Cause(ctx)
			}
			b.first, b.n = index, 0
			var err error
			for b.n < batchBlocks && err == nil {
				var n int
				buf := b.bufs[b.n]
				n, err = io.ReadFull(r, buf)
				total += int64(n)
				if n > 0 {
					clear(buf[n:])
					b.n++
				}
			}
			index += int64(b.n)
			if limit >= 0 && total > limit {
				free <- b
				return total, fmt.Errorf("input is longer than the disk's %d bytes: %w", limit, ErrInvalid)
			}
			if b.n > 0 {
				work <- b
			} else {
				free <- b
			}
			switch {
			case err == io.EOF || err == io.ErrUnexpectedEOF:
				return total, nil
			case err != nil:
				return total, fmt.Errorf("read input: %w", err)
			}
		}
	}()
	wg.Wait()
	if readErr != nil {
		return nil, 0, readErr
	}
	if err := context.Cause(ctx); err != nil {
		return nil, 0, err
	}
	return changes, total, nil
}
