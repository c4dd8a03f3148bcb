package accesslist

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestNormAndCanonical(t *testing.T) {
	allow, err := NormAllow([]string{"10.1.2.3/8", "192.0.2.7", "10.0.0.0/8", "2001:db8::1/32"})
	if want := []string{"10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"}; err != nil || !slices.Equal(allow, want) {
		t.Fatalf("NormAllow: got %v, %v; want %v", allow, err, want)
	}
	inits, err := NormInitiators([]string{"IQN.2026-01.test:B", "iqn.2026-01.test:a", "iqn.2026-01.test:b"})
	if want := []string{"iqn.2026-01.test:a", "iqn.2026-01.test:b"}; err != nil || !slices.Equal(inits, want) {
		t.Fatalf("NormInitiators: got %v, %v; want %v", inits, err, want)
	}
	if err := CheckCanonical(allow, inits); err != nil {
		t.Fatalf("CheckCanonical of normalised lists: %v", err)
	}
	for name, l := range map[string][2][]string{
		"unmasked":  {{"10.1.0.0/8"}, nil},
		"unsorted":  {{"192.0.2.0/24", "10.0.0.0/8"}, nil},
		"empty":     {{}, nil},
		"upper":     {nil, {"iqn.2026-01.test:A"}},
		"too many":  {nil, slices.Repeat([]string{"x"}, MaxEntries+1)},
		"too long":  {nil, {strings.Repeat("x", MaxInitiatorLen+1)}},
		"not cidr":  {{"ten"}, nil},
		"zoned":     {{"fe80::1%eth0"}, nil},
		"separator": {nil, {"iqn.a,iqn.b"}},
	} {
		if err := CheckCanonical(l[0], l[1]); err == nil {
			t.Errorf("%s: CheckCanonical(%q, %q) = nil, want an error", name, l[0], l[1])
		}
	}
	if !Contains(nil, netip.MustParseAddr("192.0.2.1")) || Contains(allow, netip.MustParseAddr("192.0.2.8")) ||
		!Contains(allow, netip.MustParseAddr("::ffff:10.9.9.9")) {
		t.Fatal("Contains: an empty list allows all; a list allows its networks only, IPv4-mapped addresses as IPv4")
	}
}
