package volume

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
)

// SetAllow replaces the list of client networks (CIDR, e.g. 10.0.0.0/8 or
// 127.0.0.1/32) allowed to open the disk; an empty list allows any client.
// The networks are normalised (host bits cleared) and deduplicated.
func (m *Manager) SetAllow(ctx context.Context, disk string, cidrs []string) (DiskInfo, error) {
	var norm []string
	for _, s := range cidrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			addr, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return DiskInfo{}, fmt.Errorf("allow %q: not a CIDR or address: %w", s, ErrInvalid)
			}
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		norm = append(norm, p.Masked().String())
	}
	slices.Sort(norm)
	norm = slices.Compact(norm)
	return m.changeDisk(ctx, disk, func(rec *diskRecord) { rec.Allow = norm })
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
