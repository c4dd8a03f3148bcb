package catalog

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestSaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.cbor")
	c, err := Load(path, peerA)
	if err != nil || len(c.Snapshot()) != 0 {
		t.Fatalf("load of missing file: got %v, %v; want an empty catalog", c, err)
	}
	c.now = fixedClock()
	c.Merge(sampleEntries(t))
	mustPut(t, c, diskEntry(t, "db", 9, 0, peerA))
	if _, err := c.Delete(DiskKey("web"), 2); err != nil {
		t.Fatal(err)
	}
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode: got %v, %v; want 0600", fi.Mode().Perm(), err)
	}

	loaded, err := Load(path, peerA)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := loaded.Snapshot(), c.Snapshot(); !reflect.DeepEqual(got, want) {
		t.Fatalf("loaded\n%+v\nwant\n%+v", got, want)
	}
	// The clock survives: a new write beats every stored version.
	e := mustPut(t, loaded, diskEntry(t, "db", 10, 0, peerA))
	for _, s := range c.Snapshot() {
		if s.Version >= e.Version {
			t.Fatalf("write after load: version %d, want above stored %d", e.Version, s.Version)
		}
	}
}

func TestLoadRefusesCorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.cbor")
	if err := os.WriteFile(path, []byte("not a catalog"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, peerA); err == nil {
		t.Fatal("load of a corrupt file: got nil error, want one")
	}
}
