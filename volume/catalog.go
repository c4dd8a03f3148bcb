package volume

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weft-mesh/weft/internal/jsonfile"
)

// catalog is the durable record of this node's disks and replicas. It is
// small (one entry per disk and replica) and rewritten whole, atomically, on
// every change.
type catalog struct {
	Disks map[string]*diskRecord `json:"disks"`
	// Replicas is keyed by disk name, then replica name. A disk's replicas
	// outlive it: they are independent roots, not part of the disk.
	Replicas map[string]map[string]*replicaRecord `json:"replicas"`
	// Spacesuits is keyed by "NAME@VERSION": immutable golden images.
	Spacesuits map[string]*spacesuitRecord `json:"spacesuits,omitempty"`
}

type diskRecord struct {
	ID        string    `json:"id"` // names the overlay directory; unique per creation
	Name      string    `json:"name"`
	Size      int64     `json:"size"`
	BlockSize int64     `json:"block_size"`
	Replicas  int       `json:"replicas"`
	Sync      bool      `json:"sync,omitempty"`
	Root      string    `json:"root"`
	Created   time.Time `json:"created"`
	Committed time.Time `json:"committed"`
	Allow     []string  `json:"allow,omitempty"` // client networks, CIDR
	// Initiators and CHAP guard the disk's iSCSI targets; catalogs
	// written before them lack the keys, which means no restriction.
	Initiators []string `json:"initiators,omitempty"` // iSCSI initiator names
	CHAP       *CHAP    `json:"chap,omitempty"`
	// CHAPRequired: iSCSI logins need CHAP, whose secrets stayed on the
	// disk's previous owner; set until an operator sets some here (CHAP).
	CHAPRequired bool `json:"chap_required,omitempty"`
	// Origin is the ref the disk was cloned from; catalogs written before
	// it lack the key, as do disks made empty or imported.
	Origin string `json:"origin,omitempty"`
	// Creator names the client that made the disk (DiskSpec.Creator);
	// catalogs written before it lack the key, which means the CLI.
	Creator string `json:"creator,omitempty"`
}

type replicaRecord struct {
	Name      string    `json:"name"`
	Root      string    `json:"root"`
	Size      int64     `json:"size"`
	BlockSize int64     `json:"block_size"`
	Created   time.Time `json:"created"`
}

const catalogFile = "catalog.json"

func loadCatalog(fsys vfs.FS, dir string) (*catalog, error) {
	c := &catalog{Disks: map[string]*diskRecord{}, Replicas: map[string]map[string]*replicaRecord{}, Spacesuits: map[string]*spacesuitRecord{}}
	err := jsonfile.LoadIn(fsys, filepath.Join(dir, catalogFile), c)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load catalog: %w", err)
	}
	if c.Disks == nil {
		c.Disks = map[string]*diskRecord{}
	}
	if c.Replicas == nil {
		c.Replicas = map[string]map[string]*replicaRecord{}
	}
	if c.Spacesuits == nil {
		c.Spacesuits = map[string]*spacesuitRecord{}
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("load catalog %s: %w", filepath.Join(dir, catalogFile), err)
	}
	return c, nil
}

// check refuses a catalog the manager cannot open safely: a record that
// is null, a disk whose geometry a disk of its own could not have
// (openHead divides by the block size and sizes bitmaps by the block
// count), or whose overlay directory is not a plain name inside heads/.
// The daemon never writes such a file; a disk fault or a hand edit may.
func (c *catalog) check() error {
	for name, d := range c.Disks {
		if d == nil {
			return fmt.Errorf("disk %q: no record: %w", name, ErrInvalid)
		}
		if d.Name != name {
			return fmt.Errorf("disk %q: record names %q: %w", name, d.Name, ErrInvalid)
		}
		if d.ID == "" || !filepath.IsLocal(d.ID) || filepath.Base(d.ID) != d.ID {
			return fmt.Errorf("disk %q: overlay id %q: %w", name, d.ID, ErrInvalid)
		}
		if _, err := checkSpec(DiskSpec{Name: d.Name, Size: d.Size, BlockSize: d.BlockSize, Replicas: d.Replicas}); err != nil || d.BlockSize == 0 {
			return fmt.Errorf("disk %q: size %d, block size %d, replicas %d: %w", name, d.Size, d.BlockSize, d.Replicas, ErrInvalid)
		}
		// The lists are published to the mesh as they are, and the
		// catalog takes only canonical ones (SetACL writes no other).
		if err := checkAccess(Access{Allow: d.Allow, Initiators: d.Initiators}); err != nil {
			return fmt.Errorf("disk %q: %w", name, err)
		}
	}
	for disk, reps := range c.Replicas {
		for name, r := range reps {
			if r == nil {
				return fmt.Errorf("replica %q of disk %q: no record: %w", name, disk, ErrInvalid)
			}
		}
	}
	for key, s := range c.Spacesuits {
		if s == nil {
			return fmt.Errorf("spacesuit %q: no record: %w", key, ErrInvalid)
		}
	}
	return nil
}

// save writes the catalog durably (see atomicfile): a crash leaves either
// version, whole.
func (c *catalog) save(fsys vfs.FS, dir string) error {
	if err := jsonfile.SaveIn(fsys, filepath.Join(dir, catalogFile), c, 0o600); err != nil {
		return fmt.Errorf("save catalog: %w", mapNoSpace(err))
	}
	return nil
}

func (c *catalog) replica(disk, name string) (*replicaRecord, error) {
	r, ok := c.Replicas[disk][name]
	if !ok {
		return nil, fmt.Errorf("replica %q of disk %q: %w", name, disk, ErrNotFound)
	}
	return r, nil
}

func (c *catalog) addReplica(disk string, r *replicaRecord) {
	if c.Replicas[disk] == nil {
		c.Replicas[disk] = map[string]*replicaRecord{}
	}
	c.Replicas[disk][r.Name] = r
}

func newID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b[:])
}

// clone returns a deep copy, to roll back a failed change.
func (c *catalog) clone() *catalog {
	out := &catalog{Disks: map[string]*diskRecord{}, Replicas: map[string]map[string]*replicaRecord{}, Spacesuits: map[string]*spacesuitRecord{}}
	for k, s := range c.Spacesuits {
		cp := *s
		out.Spacesuits[k] = &cp
	}
	for k, d := range c.Disks {
		cp := *d
		cp.Allow = slices.Clone(d.Allow)
		cp.Initiators = slices.Clone(d.Initiators)
		if d.CHAP != nil {
			ch := *d.CHAP
			cp.CHAP = &ch
		}
		out.Disks[k] = &cp
	}
	for disk, reps := range c.Replicas {
		out.Replicas[disk] = map[string]*replicaRecord{}
		for k, r := range reps {
			cp := *r
			out.Replicas[disk][k] = &cp
		}
	}
	return out
}
