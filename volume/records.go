package volume

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/ipfs/go-cid"
)

// Record is one root this node holds in its catalog: a disk head (Replica
// empty) or a replica. The mesh publishes these to the other nodes.
type Record struct {
	Disk    string
	Replica string
	// Spacesuit marks a spacesuit version: Disk is its name and Replica
	// its version number.
	Spacesuit bool
	Root      cid.Cid // cid.Undef for an empty disk
	Size      int64
	BlockSize int64
	Replicas  int
	Sync      bool
	Created   time.Time
	// Access is a head's rules (what travels with it to another owner);
	// the zero value for replicas and spacesuits.
	Access Access
	// Origin and Creator are a head's (DiskInfo.Origin, Creator), which
	// travel with it too; "" for replicas and spacesuits.
	Origin  string
	Creator string
}

// Records returns every disk head and replica in the catalog, sorted by
// disk then replica name (heads first).
func (m *Manager) Records() []Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Record
	for _, d := range m.cat.Disks {
		root, _ := parseRoot(d.Root) // checked when the head opened
		out = append(out, Record{Disk: d.Name, Root: root, Size: d.Size, BlockSize: d.BlockSize,
			Replicas: d.Replicas, Sync: d.Sync, Created: d.Created, Access: d.access(),
			Origin: d.Origin, Creator: d.Creator})
	}
	for disk, reps := range m.cat.Replicas {
		replicas := DefaultReplicas
		if d, ok := m.cat.Disks[disk]; ok {
			replicas = d.Replicas
		}
		for _, r := range reps {
			root, err := parseRoot(r.Root)
			if err != nil {
				continue
			}
			out = append(out, Record{Disk: disk, Replica: r.Name, Root: root, Size: r.Size,
				BlockSize: r.BlockSize, Replicas: replicas, Created: r.Created})
		}
	}
	for _, s := range m.cat.Spacesuits {
		root, err := parseRoot(s.Root)
		if err != nil {
			continue
		}
		out = append(out, Record{Disk: s.Name, Replica: strconv.FormatUint(s.Version, 10), Spacesuit: true,
			Root: root, Size: s.Size, BlockSize: s.BlockSize, Replicas: DefaultReplicas, Created: s.Created})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Spacesuit != out[j].Spacesuit {
			return !out[i].Spacesuit
		}
		if out[i].Disk != out[j].Disk {
			return out[i].Disk < out[j].Disk
		}
		return out[i].Replica < out[j].Replica
	})
	return out
}

// Changed returns a channel that receives a value after the catalog
// changed (a disk or replica was created, committed, restored or removed).
// Changes that happen while nobody receives are folded into one.
func (m *Manager) Changed() <-chan struct{} { return m.changed }

// noteChange signals Changed; it never blocks.
func (m *Manager) noteChange() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// RootBytes returns the bytes of data blocks under root (a disk or
// replica of any node), counting through the store.
func (m *Manager) RootBytes(ctx context.Context, root cid.Cid, blockSize int64) (int64, error) {
	n, err := m.countBlocks(ctx, root)
	return n * blockSize, err
}

// CreateDiskAt creates a disk whose head starts at root: a disk handed over
// from, or taken from, another node of the mesh. The blocks need not be
// local; reads fetch them through the store.
func (m *Manager) CreateDiskAt(ctx context.Context, spec DiskSpec, root cid.Cid) (DiskInfo, error) {
	return m.createDisk(ctx, spec, root)
}

// AddReplica records a replica made elsewhere (a disk's history, adopted
// with the disk). It is an error if the replica exists.
func (m *Manager) AddReplica(ctx context.Context, r ReplicaInfo, root cid.Cid) error {
	if err := ValidateName(r.Disk); err != nil {
		return err
	}
	if err := ValidateName(r.Name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.cat.Replicas[r.Disk][r.Name]; ok {
		return fmt.Errorf("replica %q of disk %q: %w", r.Name, r.Disk, ErrExists)
	}
	snapshot := m.cat.clone()
	m.cat.addReplica(r.Disk, &replicaRecord{Name: r.Name, Root: RootText(root), Size: r.Size,
		BlockSize: r.BlockSize, Created: r.Created})
	if err := m.saveCatalog(); err != nil {
		m.cat = snapshot
		return err
	}
	m.noteChange()
	return nil
}

// saveCatalog writes the catalog (m.mu is held) and signals Changed.
//
// A failed save may still have replaced the file (the rename done, the
// directory's sync failed), so its catalog is kept in m.unsaved, whose
// roots GC keeps too, until a save succeeds: the caller goes back to the
// catalog before, but the next start may read this one. Every failed
// save is kept, not only the last: a later save can fail before its
// rename, leaving an earlier failed one's file on disk.
func (m *Manager) saveCatalog() error {
	if err := m.cat.save(m.fs, m.cfg.Dir); err != nil {
		m.unsaved = append(m.unsaved, m.cat.clone())
		return err
	}
	m.unsaved = nil
	m.noteChange()
	return nil
}
