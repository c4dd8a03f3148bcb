package volume

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/ipfs/go-cid"
)

// A spacesuit is a golden image: an immutable, versioned root ("NAME@N")
// that disks are cloned from. Publishing is O(1) like a replica; versions
// only grow.

type spacesuitRecord struct {
	Name      string    `json:"name"`
	Version   uint64    `json:"version"`
	Root      string    `json:"root"`
	Size      int64     `json:"size"`
	BlockSize int64     `json:"block_size"`
	Source    string    `json:"source"` // the disk or replica it was published from
	Created   time.Time `json:"created"`
}

// SpacesuitInfo describes a spacesuit version; the daemon answers with
// api.SpacesuitInfo.
type SpacesuitInfo struct {
	Name      string
	Version   uint64
	Ref       string // NAME@VERSION
	Root      cid.Cid
	Size      int64
	BlockSize int64
	Source    string
	Created   time.Time
	Owner     string // the node that published it (mesh)
}

// SpacesuitRef returns "NAME@VERSION".
func SpacesuitRef(name string, version uint64) string {
	return name + "@" + strconv.FormatUint(version, 10)
}

// PublishSpacesuit records src's current content (a disk, committed first,
// or a replica) as a new version of spacesuit name: at least version, and
// above every local version (the mesh passes one above every version it
// knows of; 0 means the next local one).
func (m *Manager) PublishSpacesuit(ctx context.Context, name string, src Ref, version uint64) (SpacesuitInfo, error) {
	if err := ValidateName(name); err != nil {
		return SpacesuitInfo{}, err
	}
	root, size, bs, _, release, err := m.pinRef(ctx, src)
	if err != nil {
		return SpacesuitInfo{}, err
	}
	defer release()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.refuseNameLocked(KindSpacesuit, name); err != nil {
		return SpacesuitInfo{}, err
	}
	version = max(version, m.nextVersionLocked(name))
	key := SpacesuitRef(name, version)
	if _, ok := m.cat.Spacesuits[key]; ok {
		return SpacesuitInfo{}, fmt.Errorf("spacesuit %s: %w", key, ErrExists)
	}
	snapshot := m.cat.clone()
	rec := &spacesuitRecord{Name: name, Version: version, Root: RootText(root), Size: size, BlockSize: bs,
		Source: src.String(), Created: m.cfg.Now().UTC()}
	m.cat.Spacesuits[key] = rec
	if err := m.saveCatalog(); err != nil {
		m.cat = snapshot
		return SpacesuitInfo{}, err
	}
	return rec.info(root), nil
}

// nextVersionLocked is one above the highest local version of name.
func (m *Manager) nextVersionLocked(name string) uint64 {
	var top uint64
	for _, s := range m.cat.Spacesuits {
		if s.Name == name {
			top = max(top, s.Version)
		}
	}
	return top + 1
}

// ListSpacesuits describes every local spacesuit version, by name then
// version.
func (m *Manager) ListSpacesuits(ctx context.Context) []SpacesuitInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]SpacesuitInfo, 0, len(m.cat.Spacesuits))
	for _, s := range m.cat.Spacesuits {
		if root, err := parseRoot(s.Root); err == nil { // as Records: a root that does not parse names nothing
			out = append(out, s.info(root))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Version < out[j].Version
	})
	return out
}

// RemoveSpacesuit forgets a spacesuit version. Disks cloned from it keep
// their content: they share blocks, not a dependency.
func (m *Manager) RemoveSpacesuit(ctx context.Context, name string, version uint64) error {
	key := SpacesuitRef(name, version)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.cat.Spacesuits[key]; !ok {
		return fmt.Errorf("spacesuit %s: %w", key, ErrNotFound)
	}
	snapshot := m.cat.clone()
	delete(m.cat.Spacesuits, key)
	if err := m.saveCatalog(); err != nil {
		m.cat = snapshot
		return err
	}
	return nil
}

// info describes s, whose text root parsed as root.
func (s *spacesuitRecord) info(root cid.Cid) SpacesuitInfo {
	return SpacesuitInfo{Name: s.Name, Version: s.Version, Ref: SpacesuitRef(s.Name, s.Version), Root: root,
		Size: s.Size, BlockSize: s.BlockSize, Source: s.Source, Created: s.Created}
}

// ParseSpacesuitRef parses "NAME@VERSION" with a positive version.
func ParseSpacesuitRef(s string) (string, uint64, error) {
	ref, err := ParseRef(s)
	if err != nil {
		return "", 0, err
	}
	v, err := strconv.ParseUint(ref.Replica, 10, 64)
	if err != nil || v == 0 {
		return "", 0, fmt.Errorf("spacesuit %q: want NAME@VERSION with a version from 1: %w", s, ErrInvalid)
	}
	return ref.Disk, v, nil
}

// KeepSpacesuit records a spacesuit version another node published, whose
// blocks this node now holds (pushed or pulled here), so that GC and heal
// keep them. It is an error if the version exists.
func (m *Manager) KeepSpacesuit(ctx context.Context, s SpacesuitInfo, root cid.Cid) error {
	if err := ValidateName(s.Name); err != nil {
		return err
	}
	key := SpacesuitRef(s.Name, s.Version)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.cat.Spacesuits[key]; ok {
		return fmt.Errorf("spacesuit %s: %w", key, ErrExists)
	}
	if err := m.refuseNameLocked(KindSpacesuit, s.Name); err != nil {
		return err
	}
	snapshot := m.cat.clone()
	m.cat.Spacesuits[key] = &spacesuitRecord{Name: s.Name, Version: s.Version, Root: RootText(root),
		Size: s.Size, BlockSize: s.BlockSize, Source: s.Source, Created: s.Created}
	if err := m.saveCatalog(); err != nil {
		m.cat = snapshot
		return err
	}
	return nil
}
