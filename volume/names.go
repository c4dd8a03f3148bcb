package volume

import "fmt"

// Kind is what a name names. Disks and spacesuits share one namespace:
// the doors resolve "NAME" and "NAME@X" by name, and a disk's access
// rules (allow-lists, CHAP) must never apply to a spacesuit, which has
// none, or the reverse. Replicas live under their disk's name.
type Kind int

const (
	KindNone      Kind = iota // nothing on this node has the name
	KindDisk                  // a disk
	KindSpacesuit             // one or more versions of a spacesuit
)

func (k Kind) String() string {
	switch k {
	case KindDisk:
		return "disk"
	case KindSpacesuit:
		return "spacesuit"
	}
	return "none"
}

// NameKind reports what name names on this node: a disk, a spacesuit
// (any version) or nothing. Safe for concurrent use.
func (m *Manager) NameKind(name string) Kind {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nameKindLocked(name)
}

func (m *Manager) nameKindLocked(name string) Kind {
	if _, ok := m.cat.Disks[name]; ok {
		return KindDisk
	}
	for _, s := range m.cat.Spacesuits {
		if s.Name == name {
			return KindSpacesuit
		}
	}
	return KindNone
}

// NameTaken returns the error refusing to make a want named name when
// something of another kind (other) has the name: ErrExists, wrapped with
// what holds it.
func NameTaken(want Kind, name string, other Kind) error {
	return fmt.Errorf("%s %q: a %s has that name, and disks and spacesuits share one namespace: %w", want, name, other, ErrExists)
}

// refuseNameLocked refuses a want named name if a thing of the other
// kind has the name. Call with m.mu held.
func (m *Manager) refuseNameLocked(want Kind, name string) error {
	if k := m.nameKindLocked(name); k != KindNone && k != want {
		return NameTaken(want, name, k)
	}
	return nil
}
