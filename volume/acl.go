package volume

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/weft-mesh/weft/internal/accesslist"
)

// ACL is a change of who may open a disk: each list given (non-nil)
// replaces the disk's, an empty one allowing any client; a nil one stays
// as it is.
type ACL struct {
	// Allow lists the client networks (CIDR, e.g. 10.0.0.0/8, or a single
	// address) that may open the disk over NBD TCP or iSCSI.
	Allow *[]string
	// Initiators lists the iSCSI initiator names that may log in to the
	// disk's targets.
	Initiators *[]string
}

// SetACL changes the disk's access lists as acl says, both in one save of
// the catalog: either list given is checked first, and nothing changes if
// one is invalid (ErrInvalid). Networks are normalised (host bits
// cleared), initiator names lowered (iSCSI names compare without regard
// to case, RFC 3722); both are sorted and deduplicated.
func (m *Manager) SetACL(ctx context.Context, disk string, acl ACL) (DiskInfo, error) {
	if acl.Allow == nil && acl.Initiators == nil {
		return DiskInfo{}, fmt.Errorf("acl: no list to set: %w", ErrInvalid)
	}
	var allow, initiators []string
	var err error
	if acl.Allow != nil {
		if allow, err = accesslist.NormAllow(*acl.Allow); err != nil {
			return DiskInfo{}, fmt.Errorf("%w: %w", err, ErrInvalid)
		}
	}
	if acl.Initiators != nil {
		if initiators, err = accesslist.NormInitiators(*acl.Initiators); err != nil {
			return DiskInfo{}, fmt.Errorf("%w: %w", err, ErrInvalid)
		}
	}
	return m.changeDisk(ctx, disk, false, func(rec *diskRecord) {
		if acl.Allow != nil {
			rec.Allow = allow
		}
		if acl.Initiators != nil {
			rec.Initiators = initiators
		}
	})
}

// Allowed reports whether a client at addr may open the disk.
func (m *Manager) Allowed(disk string, addr netip.Addr) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.cat.Disks[disk]
	if !ok {
		return false, fmt.Errorf("disk %q: %w", disk, ErrNotFound)
	}
	return accesslist.Contains(rec.Allow, addr), nil
}
