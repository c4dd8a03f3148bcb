package volume

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
)

// Every change of a disk's rules and every removal of its head is told to
// the OnAccessChange watchers, after the change and without the
// manager's lock (the watcher calls back into it).
func TestOnAccessChange(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := openWithDisk(t, dir, blockstore.NewMemory(), "d")
	var got []AccessChange
	m.OnAccessChange(func(c AccessChange) {
		if _, err := m.Allowed(c.Disk, netip.MustParseAddr("10.0.0.1")); err != nil && !c.Removed {
			t.Errorf("watcher of %+v: %v", c, err)
		}
		got = append(got, c)
	})
	allow := []string{"10.0.0.0/8"}
	if _, err := m.SetACL(ctx, "d", ACL{Allow: &allow}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.SetCHAP(ctx, "d", &CHAP{User: "u", Secret: "twelve-bytes-or-more"}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CarryAccess(ctx, "d", Access{CHAP: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.GiveUpDisk(ctx, "d", "fenced", cid.Undef); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateDisk(ctx, DiskSpec{Name: "e", Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveDisk(ctx, "e"); err != nil {
		t.Fatal(err)
	}
	want := []AccessChange{{Disk: "d"}, {Disk: "d", CHAP: true}, {Disk: "d", CHAP: true}, {Disk: "d", Removed: true}, {Disk: "e", Removed: true}}
	if !slices.Equal(got, want) {
		t.Fatalf("watchers told %+v, want %+v", got, want)
	}
}

// Rules carried from another owner: the lists apply, and with CHAP on
// but no secret here every login is refused (ErrNoCHAPSecret) until one
// is set; a restart keeps that; a carried CHAP off drops the secrets.
func TestCarriedAccessFailsClosed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := blockstore.NewMemory()
	m := openTestManager(t, dir, store, &fakeClock{})
	carried := Access{Allow: []string{"10.0.0.0/8"}, Initiators: []string{"iqn.2026-01.test:a"}, CHAP: true}
	info, err := m.CreateDiskAt(ctx, DiskSpec{Name: "d", Size: 1 << 20, Access: carried}, cid.Undef)
	if err != nil {
		t.Fatal(err)
	}
	if !info.CHAPMissing || !slices.Equal(info.Allow, carried.Allow) || !slices.Equal(info.Initiators, carried.Initiators) {
		t.Fatalf("adopted disk info %+v, want the carried lists and CHAP missing", info)
	}
	if c, err := m.DiskCHAP("d"); !errors.Is(err, ErrNoCHAPSecret) {
		t.Fatalf("DiskCHAP: got %v, %v; want ErrNoCHAPSecret", c, err)
	}
	m.Close()
	m = openTestManager(t, dir, store, &fakeClock{})
	if _, err := m.DiskCHAP("d"); !errors.Is(err, ErrNoCHAPSecret) {
		t.Fatalf("DiskCHAP after a restart: got %v, want ErrNoCHAPSecret", err)
	}
	if got := m.Records()[0].Access; !got.CHAP || !slices.Equal(got.Allow, carried.Allow) {
		t.Fatalf("record publishes %+v, want %+v", got, carried)
	}
	if info, err = m.SetCHAP(ctx, "d", &CHAP{User: "u", Secret: "twelve-bytes-or-more"}); err != nil || info.CHAPMissing {
		t.Fatalf("SetCHAP: %+v, %v; want CHAP set", info, err)
	}
	if c, err := m.DiskCHAP("d"); err != nil || c == nil {
		t.Fatalf("DiskCHAP after SetCHAP: %v, %v", c, err)
	}
	if _, err := m.CarryAccess(ctx, "d", Access{}); err != nil {
		t.Fatal(err)
	}
	if c, err := m.DiskCHAP("d"); err != nil || c != nil || m.Records()[0].Access.CHAP {
		t.Fatalf("carried CHAP off: DiskCHAP %v, %v; want off", c, err)
	}
	if _, err := m.CreateDiskAt(ctx, DiskSpec{Name: "x", Size: 1 << 20, Access: Access{Allow: []string{"10.1.0.0/8"}}}, cid.Undef); !errors.Is(err, ErrInvalid) {
		t.Fatalf("adopt with a list not in canonical form: got %v, want ErrInvalid", err)
	}
}

// A catalog.json whose lists are not what SetACL writes is refused at
// open: the lists are published as they are, and the mesh's catalog takes
// only canonical ones.
func TestOpenRefusesNonCanonicalLists(t *testing.T) {
	dir := t.TempDir()
	store := blockstore.NewMemory()
	m := openWithDisk(t, dir, store, "d")
	m.Close()
	path := filepath.Join(dir, catalogFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(b), `"name": "d",`, `"name": "d", "allow": ["10.1.2.3/8"],`, 1)
	if edited == string(b) {
		t.Fatalf("catalog has no disk d to edit: %s", b)
	}
	if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Dir, cfg.Store = dir, store
	if m, err := Open(context.Background(), cfg); !errors.Is(err, ErrInvalid) {
		if err == nil {
			m.Close()
		}
		t.Fatalf("open: got %v, want ErrInvalid", err)
	}
}
