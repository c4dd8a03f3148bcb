package volume

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
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
		if allow, err = normAllow(*acl.Allow); err != nil {
			return DiskInfo{}, err
		}
	}
	if acl.Initiators != nil {
		if initiators, err = normInitiators(*acl.Initiators); err != nil {
			return DiskInfo{}, err
		}
	}
	return m.changeDisk(ctx, disk, func(rec *diskRecord) {
		if acl.Allow != nil {
			rec.Allow = allow
		}
		if acl.Initiators != nil {
			rec.Initiators = initiators
		}
	})
}

// normAllow checks and normalises a list of client networks.
func normAllow(cidrs []string) ([]string, error) {
	var norm []string
	for _, s := range cidrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			addr, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("allow %q: not a CIDR or address: %w", s, ErrInvalid)
			}
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		norm = append(norm, p.Masked().String())
	}
	slices.Sort(norm)
	return slices.Compact(norm), nil
}

// Allowed reports whether a client at addr may open the disk.
func (m *Manager) Allowed(disk string, addr netip.Addr) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.cat.Disks[disk]
	if !ok {
		return false, fmt.Errorf("disk %q: %w", disk, ErrNotFound)
	}
	if len(rec.Allow) == 0 {
		return true, nil
	}
	addr = addr.Unmap()
	for _, s := range rec.Allow {
		if p, err := netip.ParsePrefix(s); err == nil && p.Contains(addr) {
			return true, nil
		}
	}
	return false, nil
}
