package volume

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ipfs/go-cid"
)

// RestoreResult says what a restore did.
type RestoreResult struct {
	Disk DiskInfo `json:"disk"`
	// Backup names the replica taken of the head before it moved, so that
	// time travel never loses the present; "" when the head was already
	// saved in a replica.
	Backup string `json:"backup"`
}

// CreateReplica commits the disk and records its root as a replica, in
// O(1) of the disk's size. An empty name gets a timestamp name.
func (m *Manager) CreateReplica(ctx context.Context, disk, name string) (ReplicaInfo, error) {
	if name != "" {
		if err := ValidateName(name); err != nil {
			return ReplicaInfo{}, err
		}
	}
	h, err := m.Head(disk)
	if err != nil {
		return ReplicaInfo{}, err
	}
	h.commitMu.Lock()
	defer h.commitMu.Unlock()
	var rec *replicaRecord
	err = m.commitLocked(ctx, h, func(root cid.Cid) error {
		var err error
		rec, err = m.addReplicaLocked(h, name, root)
		return err
	})
	if err != nil {
		return ReplicaInfo{}, err
	}
	return m.replicaInfo(ctx, disk, rec)
}

// addReplicaLocked records a replica of h at root; m.mu is held.
func (m *Manager) addReplicaLocked(h *Head, name string, root cid.Cid) (*replicaRecord, error) {
	now := m.cfg.Now().UTC()
	if name == "" {
		name = m.freeReplicaNameLocked(h.name, now.Format(replicaTimeFormat))
	}
	if _, ok := m.cat.Replicas[h.name][name]; ok {
		return nil, fmt.Errorf("replica %q of disk %q: %w", name, h.name, ErrExists)
	}
	rec := &replicaRecord{Name: name, Root: RootText(root), Size: h.size, BlockSize: h.blockSize, Created: now}
	m.cat.addReplica(h.name, rec)
	return rec, nil
}

// replicaTimeFormat is the time in the names of replicas weft makes
// itself.
const replicaTimeFormat = "20060102-150405"

// freeReplicaNameLocked returns base, or base-2, base-3, ... if taken, as
// the name of a new replica of disk; m.mu is held.
func (m *Manager) freeReplicaNameLocked(disk, base string) string {
	name := base
	for n := 2; m.cat.Replicas[disk][name] != nil; n++ {
		name = fmt.Sprintf("%s-%d", base, n)
	}
	return name
}

func (m *Manager) replicaInfo(ctx context.Context, disk string, rec *replicaRecord) (ReplicaInfo, error) {
	root, err := parseRoot(rec.Root)
	if err != nil {
		return ReplicaInfo{}, fmt.Errorf("replica %q of disk %q: %w", rec.Name, disk, err)
	}
	blocks, err := m.countBlocks(ctx, root)
	if err != nil {
		return ReplicaInfo{}, fmt.Errorf("replica %q of disk %q: %w", rec.Name, disk, err)
	}
	return ReplicaInfo{
		Disk: disk, Name: rec.Name, Root: root, Size: rec.Size, BlockSize: rec.BlockSize,
		UsedBytes: blocks * rec.BlockSize, Created: rec.Created,
	}, nil
}

// ListReplicas describes a disk's replicas, oldest first. It works for a
// removed disk whose replicas remain.
func (m *Manager) ListReplicas(ctx context.Context, disk string) ([]ReplicaInfo, error) {
	m.mu.Lock()
	_, exists := m.cat.Disks[disk]
	var recs []replicaRecord
	for _, r := range sortedReplicas(m.cat.Replicas[disk]) {
		recs = append(recs, *r)
	}
	m.mu.Unlock()
	if !exists && len(recs) == 0 {
		return nil, fmt.Errorf("disk %q: %w", disk, ErrNotFound)
	}
	out := make([]ReplicaInfo, 0, len(recs))
	for i := range recs {
		info, err := m.replicaInfo(ctx, disk, &recs[i])
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// ReplicaDisks returns, sorted, the names of the disks that have replicas,
// including removed disks whose replicas remain.
func (m *Manager) ReplicaDisks(ctx context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.cat.Replicas))
	for disk, reps := range m.cat.Replicas {
		if len(reps) > 0 {
			out = append(out, disk)
		}
	}
	slices.Sort(out)
	return out, nil
}

// RemoveReplica forgets a replica. Its blocks are freed by the next GC if
// no other root reaches them.
func (m *Manager) RemoveReplica(ctx context.Context, disk, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.cat.replica(disk, name); err != nil {
		return err
	}
	snapshot := m.cat.clone()
	delete(m.cat.Replicas[disk], name)
	if len(m.cat.Replicas[disk]) == 0 {
		delete(m.cat.Replicas, disk)
	}
	if err := m.saveCatalog(); err != nil {
		m.cat = snapshot
		return err
	}
	return nil
}

// Restore moves a disk's head to a replica (time travel), discarding the
// overlay. If the head holds anything no replica has, it is first saved as
// a replica named in the result, so a restore can itself be undone.
func (m *Manager) Restore(ctx context.Context, disk, replica string) (RestoreResult, error) {
	h, err := m.Head(disk)
	if err != nil {
		return RestoreResult{}, err
	}
	h.commitMu.Lock()
	defer h.commitMu.Unlock()
	var target cid.Cid
	var backup string
	err = m.commitLocked(ctx, h, func(root cid.Cid) error {
		rep, err := m.cat.replica(disk, replica)
		if err != nil {
			return err
		}
		if rep.Size != h.size || rep.BlockSize != h.blockSize {
			return fmt.Errorf("replica %q is %d bytes in %d-byte blocks, disk %q is %d in %d: clone it instead: %w",
				replica, rep.Size, rep.BlockSize, disk, h.size, h.blockSize, ErrInvalid)
		}
		if target, err = parseRoot(rep.Root); err != nil {
			return err
		}
		if !m.rootSavedLocked(disk, root) {
			rec, err := m.addReplicaLocked(h, "before-restore-"+m.cfg.Now().UTC().Format(replicaTimeFormat), root)
			if err != nil {
				return err
			}
			backup = rec.Name
		}
		rec := m.cat.Disks[disk]
		rec.Root = rep.Root
		rec.Committed = m.cfg.Now().UTC()
		return nil
	})
	if err != nil {
		return RestoreResult{}, err
	}
	if err := h.reset(target); err != nil {
		return RestoreResult{}, err
	}
	info, err := m.DiskInfo(ctx, disk)
	return RestoreResult{Disk: info, Backup: backup}, err
}

// rootSavedLocked reports whether root is empty or some replica of disk
// has it; m.mu is held.
func (m *Manager) rootSavedLocked(disk string, root cid.Cid) bool {
	if !root.Defined() {
		return true
	}
	s := root.String()
	for _, r := range m.cat.Replicas[disk] {
		if r.Root == s {
			return true
		}
	}
	return false
}

// reset moves the head to root and empties the overlay. The catalog must
// already name root, and the caller holds h.commitMu.
func (h *Head) reset(root cid.Cid) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.root = root
	clear(h.dirty)
	clear(h.committing)
	clear(h.unpunched)
	h.dirtySince = time.Time{}
	h.ov.clearAll()
	if err := h.persist(); err != nil {
		return fmt.Errorf("disk %q: reset overlay: %w", h.name, err)
	}
	if err := h.ov.zeroBlocks(0, h.nblocks()); err != nil {
		h.staleOverlay = true
		return fmt.Errorf("disk %q: reset overlay: %w", h.name, err)
	}
	return nil
}
