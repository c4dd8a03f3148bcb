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
)

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
func (m *Manager) importBlocks(ctx context.Context, r io.Reader, blockSize, limit int64) ([]blockmap.Change, int64, error) {
	type chunk struct {
		index int64
		buf   []byte
	}
	workers := runtime.GOMAXPROCS(0)
	free := make(chan []byte, workers*putBatch*2)
	for range cap(free) {
		free <- make([]byte, blockSize)
	}
	work := make(chan chunk, cap(free))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var mu sync.Mutex
	var changes []blockmap.Change
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := newBlockBatch(m.store, putBatch, 0)
			var held [][]byte // buffers in the current batch
			var local []blockmap.Change
			flush := func() error {
				err := batch.flush(ctx)
				for _, b := range held {
					free <- b
				}
				held = held[:0]
				return err
			}
			for c := range work {
				if id := batch.add(c.buf); id.Defined() {
					local = append(local, blockmap.Change{Index: uint64(c.index), CID: id})
					held = append(held, c.buf)
				} else {
					free <- c.buf
				}
				if len(held) == putBatch {
					if err := flush(); err != nil {
						cancel(err)
					}
				}
			}
			if err := flush(); err != nil {
				cancel(err)
			}
			mu.Lock()
			changes = append(changes, local...)
			mu.Unlock()
		}()
	}

	total, readErr := func() (int64, error) {
		defer close(work)
		var total int64
		for index := int64(0); ; index++ {
			var buf []byte
			select {
			case buf = <-free:
			case <-ctx.Done():
				return total, context.Cause(ctx)
			}
			n, err := io.ReadFull(r, buf)
			total += int64(n)
			if limit >= 0 && total > limit {
				free <- buf
				return total, fmt.Errorf("input is longer than the disk's %d bytes: %w", limit, ErrInvalid)
			}
			if n > 0 {
				clear(buf[n:])
				work <- chunk{index: index, buf: buf}
			} else {
				free <- buf
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
