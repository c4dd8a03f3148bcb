// Package accesslist holds the one canonical form of a disk's access lists: the
// client networks that may open it and the iSCSI initiator names that may
// log in to it. The volumes store them in this form and the mesh catalog
// carries them to a disk's next owner in it; the catalog's decoder takes a
// list only if it is already canonical (Norm of it is itself), so that a
// record re-encodes to the bytes it came in.
package accesslist

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Bounds of a list. MaxInitiatorLen is the longest iSCSI name (RFC 7143
// section 4.2.7.1).
const (
	MaxEntries      = 256
	MaxInitiatorLen = 223
)

// NormAllow checks a list of client networks (CIDR, or a single address)
// and returns it canonical: host bits cleared, sorted, without duplicates.
// nil and an empty list both give nil: no restriction.
func NormAllow(cidrs []string) ([]string, error) {
	if len(cidrs) > MaxEntries {
		return nil, fmt.Errorf("%d networks, more than %d", len(cidrs), MaxEntries)
	}
	var norm []string
	for _, s := range cidrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			addr, aerr := netip.ParseAddr(s)
			if aerr != nil || addr.Zone() != "" {
				return nil, fmt.Errorf("allow %.100q: not a CIDR or address", s)
			}
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		norm = append(norm, p.Masked().String())
	}
	slices.Sort(norm)
	return slices.Compact(norm), nil
}

// NormInitiators checks a list of iSCSI initiator names and returns it
// canonical: lower case (iSCSI names compare without regard to case, RFC
// 3722), sorted, without duplicates. nil and an empty list both give nil.
func NormInitiators(names []string) ([]string, error) {
	if len(names) > MaxEntries {
		return nil, fmt.Errorf("%d initiators, more than %d", len(names), MaxEntries)
	}
	var norm []string
	for _, n := range names {
		if n == "" || len(n) > MaxInitiatorLen || strings.ContainsFunc(n, func(r rune) bool { return r <= ' ' || r > '~' || r == ',' || r == '=' }) {
			return nil, fmt.Errorf("initiator %.100q: want an iSCSI name (iqn.…, eui.… or naa.…) of up to %d characters", n, MaxInitiatorLen)
		}
		norm = append(norm, strings.ToLower(n))
	}
	slices.Sort(norm)
	return slices.Compact(norm), nil
}

// CheckCanonical returns an error unless allow and initiators are valid
// lists in canonical form (NormAllow and NormInitiators give them back
// unchanged; an empty list must be nil).
func CheckCanonical(allow, initiators []string) error {
	for _, l := range []struct {
		what string
		list []string
		norm func([]string) ([]string, error)
	}{{"allow-list", allow, NormAllow}, {"initiator list", initiators, NormInitiators}} {
		norm, err := l.norm(l.list)
		if err != nil {
			return fmt.Errorf("%s: %w", l.what, err)
		}
		if !slices.Equal(norm, l.list) || (l.list != nil && len(l.list) == 0) {
			return fmt.Errorf("%s not in canonical form (sorted, unique, masked, lower case)", l.what)
		}
	}
	return nil
}

// Contains reports whether addr is in one of the networks of allow, a
// canonical list; an empty list allows every address.
func Contains(allow []string, addr netip.Addr) bool {
	if len(allow) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, s := range allow {
		if p, err := netip.ParsePrefix(s); err == nil && p.Contains(addr) {
			return true
		}
	}
	return false
}
