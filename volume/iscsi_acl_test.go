package volume

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-mesh/weft/blockstore"
)

func TestInitiatorsAndCHAP(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := blockstore.NewMemory()
	m := openWithDisk(t, dir, store, "d")
	if ok, err := m.InitiatorAllowed("d", "iqn.2000-01.test:any"); err != nil || !ok {
		t.Fatalf("empty initiator list: allowed = %v, %v; want true", ok, err)
	}
	info, err := m.SetACL(ctx, "d", ACL{Initiators: &[]string{"IQN.2000-01.test:A", "iqn.2000-01.test:a", "iqn.2000-01.test:b"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(info.Initiators, " ") != "iqn.2000-01.test:a iqn.2000-01.test:b" {
		t.Fatalf("initiators = %v", info.Initiators)
	}
	for name, want := range map[string]bool{"iqn.2000-01.test:A": true, "iqn.2000-01.test:b": true, "iqn.2000-01.test:c": false} {
		if ok, _ := m.InitiatorAllowed("d", name); ok != want {
			t.Errorf("InitiatorAllowed(%s) = %v, want %v", name, ok, want)
		}
	}
	if _, err := m.SetACL(ctx, "d", ACL{Initiators: &[]string{"has space"}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("an initiator name with a space: %v, want ErrInvalid", err)
	}

	for _, bad := range []CHAP{
		{User: "u", Secret: "short"},
		{User: "", Secret: "long-enough-secret"},
		{User: "u", Secret: "long-enough-secret", TargetUser: "t", TargetSecret: "long-enough-secret"},
		{User: "u", Secret: "long-enough-secret", TargetUser: "t"},
	} {
		if _, err := m.SetCHAP(ctx, "d", &bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetCHAP(%+v): %v, want ErrInvalid", bad, err)
		}
	}
	c := CHAP{User: "alice", Secret: "alice-secret-0123", TargetUser: "tgt", TargetSecret: "target-secret-4567"}
	info, err = m.SetCHAP(ctx, "d", &c)
	if err != nil {
		t.Fatal(err)
	}
	if info.CHAPUser != "alice" || info.CHAPTargetUser != "tgt" {
		t.Fatalf("info: chap users %q %q", info.CHAPUser, info.CHAPTargetUser)
	}

	// Both survive a restart; the catalog holding the secrets is 0600.
	m.Close()
	fi, err := os.Stat(filepath.Join(dir, catalogFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("catalog mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	m = openTestManager(t, dir, store, &fakeClock{})
	got, err := m.DiskCHAP("d")
	if err != nil || got == nil || *got != c {
		t.Fatalf("after restart: chap %+v, %v", got, err)
	}
	if ok, _ := m.InitiatorAllowed("d", "iqn.2000-01.test:c"); ok {
		t.Fatal("after restart: iqn.2000-01.test:c allowed")
	}
	if _, err := m.SetCHAP(ctx, "d", nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.DiskCHAP("d"); got != nil {
		t.Fatalf("chap after clearing: %+v", got)
	}
	m.Close()
}

// TestCatalogWithoutISCSIKeys: a catalog written before the iSCSI fields
// (no "initiators", no "chap") opens with no restriction, and one with
// them still decodes into a record without them (as an older binary
// reads it: unknown keys are ignored).
func TestCatalogWithoutISCSIKeys(t *testing.T) {
	var old struct {
		Disks map[string]struct {
			Name  string   `json:"name"`
			Allow []string `json:"allow"`
		} `json:"disks"`
	}
	rec := diskRecord{Name: "d", Allow: []string{"10.0.0.0/8"}, Initiators: []string{"iqn.x"}, CHAP: &CHAP{User: "u", Secret: "s"}}
	b, err := json.Marshal(catalog{Disks: map[string]*diskRecord{"d": &rec}})
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &old); err != nil || old.Disks["d"].Allow[0] != "10.0.0.0/8" {
		t.Fatalf("an older reader: %v, %+v", err, old)
	}
	var back diskRecord
	if err := json.Unmarshal([]byte(`{"name":"d","allow":["10.0.0.0/8"]}`), &back); err != nil || back.CHAP != nil || back.Initiators != nil {
		t.Fatalf("a record without iSCSI keys: %+v, %v", back, err)
	}
}
