package volume

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/weft-mesh/weft/blockstore"
)

func TestAllowList(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := blockstore.NewMemory()
	m := openWithDisk(t, dir, store, "d")
	if ok, err := m.Allowed("d", netip.MustParseAddr("192.0.2.7")); err != nil || !ok {
		t.Fatalf("empty allow-list: allowed = %v, %v; want true", ok, err)
	}
	info, err := m.SetACL(ctx, "d", ACL{Allow: &[]string{"10.1.2.3/8", "127.0.0.1", "10.0.0.0/8"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.0.0.0/8", "127.0.0.1/32"}; len(info.Allow) != 2 || info.Allow[0] != want[0] || info.Allow[1] != want[1] {
		t.Fatalf("allow = %v, want %v", info.Allow, want)
	}
	for addr, want := range map[string]bool{"10.9.9.9": true, "127.0.0.1": true, "127.0.0.2": false, "::ffff:10.0.0.1": true, "192.0.2.7": false} {
		if ok, _ := m.Allowed("d", netip.MustParseAddr(addr)); ok != want {
			t.Errorf("Allowed(%s) = %v, want %v", addr, ok, want)
		}
	}
	if _, err := m.SetACL(ctx, "d", ACL{Allow: &[]string{"nonsense"}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("SetACL(allow nonsense): got %v, want ErrInvalid", err)
	}
	// The list survives a restart.
	m.Close()
	m = openTestManager(t, dir, store, &fakeClock{})
	defer m.Close()
	if ok, _ := m.Allowed("d", netip.MustParseAddr("192.0.2.7")); ok {
		t.Fatal("after restart: 192.0.2.7 allowed, want refused")
	}
}

// TestSetACLBothListsAtOnce checks that one SetACL sets both lists, that
// a list not given stays, that an invalid list changes neither, and that
// a change of nothing is refused.
func TestSetACLBothListsAtOnce(t *testing.T) {
	ctx := context.Background()
	m := openWithDisk(t, t.TempDir(), blockstore.NewMemory(), "d")
	defer m.Close()
	info, err := m.SetACL(ctx, "d", ACL{Allow: &[]string{"10.0.0.0/8"}, Initiators: &[]string{"iqn.2000-01.test:a"}})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(info.Allow, info.Initiators) != "[10.0.0.0/8] [iqn.2000-01.test:a]" {
		t.Fatalf("after setting both: allow %v, initiators %v; want [10.0.0.0/8] [iqn.2000-01.test:a]", info.Allow, info.Initiators)
	}
	if _, err := m.SetACL(ctx, "d", ACL{Allow: &[]string{"192.0.2.0/24"}, Initiators: &[]string{"has space"}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("SetACL with an invalid initiator: got %v, want ErrInvalid", err)
	}
	if info, err = m.SetACL(ctx, "d", ACL{Initiators: &[]string{}}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(info.Allow, info.Initiators) != "[10.0.0.0/8] []" {
		t.Fatalf("after a refused change and clearing the initiators: allow %v, initiators %v; want [10.0.0.0/8] []", info.Allow, info.Initiators)
	}
	if _, err := m.SetACL(ctx, "d", ACL{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("SetACL of no list: got %v, want ErrInvalid", err)
	}
}
