package volume

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weft-mesh/weft/blockstore"
)

// FuzzOpenCatalog opens a node's volumes over a catalog.json left in any
// state (a disk fault, an operator's edit): whatever it holds, opening
// does not panic, allocates for no more than the disks' sizes allow, and a
// catalog opened saves and loads back the same.
func FuzzOpenCatalog(f *testing.F) {
	const root = `"bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"`
	f.Add([]byte(`{"disks":{"vm":{"id":"0123456789abcdef","name":"vm","size":1048576,"block_size":65536,"replicas":2,"root":` + root +
		`,"created":"2026-01-01T00:00:00Z","committed":"2026-01-01T00:00:00Z","allow":["10.0.0.0/8"]}},` +
		`"replicas":{"vm":{"monday":{"name":"monday","root":` + root + `,"size":1048576,"block_size":65536,"created":"2026-01-01T00:00:00Z"}}},` +
		`"spacesuits":{"ubuntu@1":{"name":"ubuntu","version":1,"root":` + root + `,"size":1048576,"block_size":65536,"source":"vm"}}}`))
	f.Add([]byte(`{"disks":{"empty":{"id":"fedcba9876543210","name":"empty","size":16384,"block_size":4096,"replicas":1,"root":""}},"replicas":{}}`))
	f.Add([]byte(`{"disks":{"vm":null},"replicas":{"vm":{"x":null}},"spacesuits":{"s@1":null}}`))
	f.Add([]byte(`{"disks":{"vm":{"id":"a","name":"vm","size":4096,"block_size":0}}}`))
	f.Add([]byte(`{"disks":{"vm":{"id":"../../escape","name":"vm","size":4096,"block_size":4096}}}`))
	f.Add([]byte(`{"disks":{"vm":{"id":"b","name":"vm","size":4611686018427387904,"block_size":4096}}}`))
	f.Add([]byte(`{"disks":null,"replicas":null}`))
	f.Add([]byte(`{"disks":{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, catalogFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := DefaultConfig()
		cfg.Dir, cfg.Store, cfg.CommitInterval = dir, blockstore.NewMemory(), 0
		m, err := Open(context.Background(), cfg)
		if err != nil {
			return
		}
		defer m.Close()
		for name, rec := range m.cat.Disks {
			if rec.Name != name {
				t.Fatalf("disk %q opened from a record named %q", name, rec.Name)
			}
			if !filepath.IsLocal(rec.ID) || filepath.Base(rec.ID) != rec.ID {
				t.Fatalf("disk %q opened with overlay directory %q", name, rec.ID)
			}
		}
		saved := m.cat.clone()
		if err := saved.save(vfs.Default, dir); err != nil {
			t.Fatal(err)
		}
		again, err := loadCatalog(vfs.Default, dir)
		if err != nil {
			t.Fatalf("saved catalog does not load: %v", err)
		}
		if !reflect.DeepEqual(again, saved) {
			t.Fatalf("catalog round trip:\n got %+v\nwant %+v", again, saved)
		}
	})
}
