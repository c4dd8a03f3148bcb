package volume

import (
	"context"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
)

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
	h.dirtySince = time.Time{}
	oldRoot := h.root
	h.mu.Unlock()

	if len(list) == 0 && publish == nil {
		h.mu.Lock()
		h.commitErr = "" // nothing is left to commit
		h.mu.Unlock()
		return nil
	}
	m.gcMu.RLock()
	defer m.gcMu.RUnlock()
	// The overlay is made durable first, so that it holds what the new
	// root will: the bits of the committed blocks are cleared durably only
	// after the root is, and until then (a crash, or a failed persist
	// followed by commits with nothing to do) the overlay's synced bytes
	// win over the root. Unsynced writes there would make them stale.
	h.mu.RLock()
	err := h.persist()
	h.mu.RUnlock()
	var newRoot cid.Cid
	if err == nil {
		newRoot, err = m.storeBlocks(ctx, h, oldRoot, list)
	}
	// commitErr says why the disk's writes could not be committed: a
	// persist or store failure, not the caller's publish error (a replica
	// that exists) nor a cancelled caller, which say nothing about the disk.
	diskErr := err != nil && ctx.Err() == nil
	if err != nil {
		err = fmt.Errorf("commit disk %q: %w", h.name, err)
	} else {
		// publish's errors are the caller's (a replica that exists): they
		// speak for themselves, without naming a commit.
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
		if h.dirtySince.IsZero() {
			h.dirtySince = h.m.cfg.Now()
		}
		if diskErr {
			h.commitErr = err.Error()
		}
		return err
	}
	h.root = newRoot
	h.commitErr = ""
	// The blocks the last commit left unpunched are punched now, unless
	// they were written since (then the overlay serves them again). The
	// blocks this commit cleans are left unpunched until the next one.
	var clean []int64
	h.unpunched.each(func(i int64) {
		if !h.inOverlay(i) {
			clean = append(clean, i)
		}
	})
	clear(h.unpunched)
	for _, i := range list {
		h.committing.clear(i)
		if !h.dirty.get(i) {
			h.ov.set(i, false)
			h.unpunched.set(i)
		}
	}
	// The bitmap must say "clean" durably before the overlay copy is
	// punched, or a crash could serve a punched block as zeros. (A crash
	// with unpunched blocks is safe too: opening a head punches every
	// clean block.)
	if err := h.persist(); err != nil {
		err = fmt.Errorf("commit disk %q: %w", h.name, err)
		h.commitErr = err.Error()
		return err
	}
	if err := h.punch(clean); err != nil {
		return fmt.Errorf("commit disk %q: %w", h.name, err)
	}
	return nil
}

// punch punches the listed clean blocks (ascending) out of the overlay, in
// runs of consecutive blocks. The caller holds mu exclusively.
func (h *Head) punch(clean []int64) error {
	for len(clean) > 0 {
		n := 1
		for n < len(clean) && clean[n] == clean[0]+int64(n) {
			n++
		}
		if err := h.ov.zeroBlocks(clean[0], int64(n)); err != nil {
			h.staleOverlay = true
			return err
		}
		clean = clean[n:]
	}
	return nil
}

// punchQuiet punches the blocks the last commit left unpunched once the
// head has had no writes for quiet: a disk that stopped being written
// gives its overlay space back.
func (h *Head) punchQuiet(now time.Time, quiet time.Duration) error {
	h.mu.RLock()
	h.bitsMu.Lock()
	due := now.Sub(h.lastWrite) >= quiet && h.unpunched.count() > 0
	h.bitsMu.Unlock()
	h.mu.RUnlock()
	if !due {
		return nil
	}
	h.commitMu.Lock()
	defer h.commitMu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.removed || now.Sub(h.lastWrite) < quiet {
		return nil
	}
	var clean []int64
	h.unpunched.each(func(i int64) {
		if !h.inOverlay(i) {
			clean = append(clean, i)
		}
	})
	if len(clean) == 0 {
		return nil
	}
	clear(h.unpunched)
	if err := h.punch(clean); err != nil {
		return fmt.Errorf("disk %q: punch committed blocks: %w", h.name, err)
	}
	return nil
}

// storeBlocks hashes and stores the listed overlay blocks and returns the
// root of the map with them applied.
func (m *Manager) storeBlocks(ctx context.Context, h *Head, root cid.Cid, list []int64) (cid.Cid, error) {
	if len(list) == 0 {
		return root, nil
	}
	changes, err := m.storeBlocksFrom(ctx, h.blockSize, true, func(b *batch) (bool, error) {
		for !b.full() && len(list) > 0 {
			i := list[0]
			list = list[1:]
			// The stripe keeps a write from landing halfway through the
			// read: a committed block is one write's content, never a mix.
			h.mu.RLock()
			unlock := h.lockBlocks(i, i)
			err := h.ov.readBlock(i, b.add(i))
			unlock()
			h.mu.RUnlock()
			if err != nil {
				return false, err
			}
		}
		return len(list) > 0, nil
	})
	if err != nil {
		return cid.Undef, err
	}
	return m.maps.Update(ctx, root, h.levels, changes)
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
		rec.Root = RootText(root)
		rec.Committed = m.cfg.Now().UTC()
	}
	if publish != nil {
		if err := publish(root); err != nil {
			m.cat = snapshot
			return err
		}
	}
	if err := m.saveCatalog(); err != nil {
		m.cat = snapshot
		return fmt.Errorf("commit disk %q: %w", h.name, err)
	}
	return nil
}
