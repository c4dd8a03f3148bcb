package volume

import (
	"context"
	"errors"
	"fmt"
	"io"

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
		// Refused before the input is read; createDisk checks again.
		if k := m.NameKind(spec.Name); k == KindSpacesuit {
			return DiskInfo{}, NameTaken(KindDisk, spec.Name, k)
		}
		// A placeholder that is a whole number of any block size; the
		// size is checked for real once the input's length is known.
		spec.Size = MaxBlockSize
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
		spec.Size = roundUp(max(total, 1), spec.BlockSize)
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
		rec.Root = RootText(root)
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
	var total, next int64
	changes, err := m.storeBlocksFrom(ctx, blockSize, false, func(b *batch) (bool, error) {
		for !b.full() {
			buf := b.add(next)
			n, err := io.ReadFull(r, buf)
			total += int64(n)
			switch {
			case limit >= 0 && total > limit:
				return false, fmt.Errorf("input is longer than the disk's %d bytes: %w", limit, ErrInvalid)
			case n == 0:
				b.index = b.index[:len(b.index)-1]
			default:
				clear(buf[n:])
				next++
			}
			switch {
			case err == io.EOF || err == io.ErrUnexpectedEOF:
				return false, nil
			case err != nil:
				return false, fmt.Errorf("read input: %w", err)
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, 0, err
	}
	// Zero blocks of a fresh map need no change.
	kept := changes[:0]
	for _, c := range changes {
		if c.CID.Defined() {
			kept = append(kept, c)
		}
	}
	return kept, total, nil
}
