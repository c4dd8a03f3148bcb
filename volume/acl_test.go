package volume

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/weft-mesh/weft/blockstore"
)

func TestAllowList(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := blockstore.NewMemory()
	m := openTestManager(t, dir, store, &fakeClock{})
	if _, err := m.CreateDisk(ctx, DiskSpec{Name: "d", Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if ok, err := m.Allowed("d", netip.MustParseAddr("192.0.2.7")); err != nil || !ok {
		t.Fatalf("empty allow-list: allowed = %v, %v; want true", ok, err)
	}
	info, err := m.SetAllow(ctx, "d", []string{"10.1.2.3/8", "127.0.0.1", "10.0.0.0/8"})
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
	if _, err := m.SetAllow(ctx, "d", []string{"nonsense"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("SetAllow(nonsense): got %v, want ErrInvalid", err)
	}
	// The list survives a restart.
	m.Close()
	m = openTestManager(t, dir, store, &fakeClock{})
	defer m.Close()
	if ok, _ := m.Allowed("d", netip.MustParseAddr("192.0.2.7")); ok {
		t.Fatal("after restart: 192.0.2.7 allowed, want refused")
	}
}
