package volume

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
)

// TestCatalogKeepsTextRoots loads a catalog file written in the format
// homes have on disk (roots as CID text, "" for an empty disk), checks the
// manager answers with those roots as CIDs, and that the file it saves
// after a change still holds them as text.
func TestCatalogKeepsTextRoots(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := blockstore.NewMemory()
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	const bs = 4096
	m := openTestManager(t, dir, store, clock)
	vm, err := m.Import(ctx, DiskSpec{Name: "vm", BlockSize: bs}, bytes.NewReader(bytes.Repeat([]byte("weft"), 4*bs)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateDisk(ctx, DiskSpec{Name: "empty", Size: 4 * bs, BlockSize: bs}); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for name, d := range m.cat.Disks {
		ids[name] = d.ID
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	root := vm.Root.String()
	file := fmt.Sprintf(`{
  "disks": {
    "empty": {"id": %q, "name": "empty", "size": 16384, "block_size": 4096, "replicas": 2, "root": "", "created": "2026-01-01T00:00:02Z", "committed": "2026-01-01T00:00:02Z"},
    "vm": {"id": %q, "name": "vm", "size": 16384, "block_size": 4096, "replicas": 2, "root": %q, "created": "2026-01-01T00:00:01Z", "committed": "2026-01-01T00:00:01Z"}
  },
  "replicas": {"vm": {"r1": {"name": "r1", "root": %q, "size": 16384, "block_size": 4096, "created": "2026-01-01T00:00:03Z"}}},
  "spacesuits": {"img@1": {"name": "img", "version": 1, "root": %q, "size": 16384, "block_size": 4096, "source": "vm", "created": "2026-01-01T00:00:04Z"}}
}`, ids["empty"], ids["vm"], root, root, root)
	if err := os.WriteFile(filepath.Join(dir, catalogFile), []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}

	m = openTestManager(t, dir, store, clock)
	t.Cleanup(func() { m.Close() })
	if d, err := m.DiskInfo(ctx, "vm"); err != nil || d.Root != vm.Root || d.UsedBytes != vm.UsedBytes {
		t.Fatalf("disk vm: %+v, %v; want root %s, %d bytes used", d, err, root, vm.UsedBytes)
	}
	if d, err := m.DiskInfo(ctx, "empty"); err != nil || d.Root != cid.Undef {
		t.Fatalf("disk empty: %+v, %v; want no root", d, err)
	}
	if reps, err := m.ListReplicas(ctx, "vm"); err != nil || len(reps) != 1 || reps[0].Root != vm.Root {
		t.Fatalf("replicas of vm: %+v, %v; want r1 at %s", reps, err, root)
	}
	if sps := m.ListSpacesuits(ctx); len(sps) != 1 || sps[0].Root != vm.Root {
		t.Fatalf("spacesuits: %+v; want img@1 at %s", sps, root)
	}

	if _, err := m.CreateReplica(ctx, "vm", "r2"); err != nil { // saves the catalog
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, catalogFile))
	if err != nil {
		t.Fatal(err)
	}
	var saved struct {
		Disks      map[string]struct{ Root any }            `json:"disks"`
		Replicas   map[string]map[string]struct{ Root any } `json:"replicas"`
		Spacesuits map[string]struct{ Root any }            `json:"spacesuits"`
	}
	if err := json.Unmarshal(b, &saved); err != nil {
		t.Fatal(err)
	}
	got := []any{saved.Disks["vm"].Root, saved.Disks["empty"].Root, saved.Replicas["vm"]["r1"].Root,
		saved.Replicas["vm"]["r2"].Root, saved.Spacesuits["img@1"].Root}
	want := []any{root, "", root, root, root}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("saved roots %q, want text %q:\n%s", got, want, b)
	}
	for i := range got {
		if _, ok := got[i].(string); !ok {
			t.Fatalf("saved root %d is %T, want a string:\n%s", i, got[i], b)
		}
	}
}

// TestCloneRecordsItsOrigin checks that a clone records the ref it was
// made from, that the record survives a restart, and that a disk made
// empty has none.
func TestCloneRecordsItsOrigin(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := blockstore.NewMemory()
	m := openWithDisk(t, dir, store, "src")
	if _, err := m.CreateReplica(ctx, "src", "r1"); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"src": "", "of-head": "src", "of-replica": "src@r1"}
	for name, origin := range want {
		if origin == "" {
			continue
		}
		ref, _ := ParseRef(origin)
		d, err := m.Clone(ctx, ref, name, "")
		if err != nil {
			t.Fatal(err)
		}
		if d.Origin != origin {
			t.Fatalf("Clone(%s) answered origin %q, want %q", origin, d.Origin, origin)
		}
	}
	m.Close()
	m = openTestManager(t, dir, store, &fakeClock{})
	defer m.Close()
	for name, origin := range want {
		d, err := m.DiskInfo(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if d.Origin != origin {
			t.Fatalf("after restart: disk %s origin %q, want %q", name, d.Origin, origin)
		}
	}
}

// TestDiskRecordsItsCreator: the creator a disk is made or cloned with is
// kept in the catalog, across a restart; a bad one is refused.
func TestDiskRecordsItsCreator(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := blockstore.NewMemory()
	m := openWithDisk(t, dir, store, "src")
	if _, err := m.CreateDisk(ctx, DiskSpec{Name: "made", Size: 1 << 20, Creator: "csi"}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Clone(ctx, Ref{Disk: "src"}, "cloned", "csi"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateDisk(ctx, DiskSpec{Name: "bad", Size: 1 << 20, Creator: "no/slash"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("CreateDisk with creator %q: %v, want ErrInvalid", "no/slash", err)
	}
	if _, err := m.Clone(ctx, Ref{Disk: "src"}, "bad", strings.Repeat("x", 33)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Clone with a 33-character creator: %v, want ErrInvalid", err)
	}
	m.Close()
	m = openTestManager(t, dir, store, &fakeClock{})
	defer m.Close()
	for name, want := range map[string]string{"src": "", "made": "csi", "cloned": "csi"} {
		d, err := m.DiskInfo(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if d.Creator != want {
			t.Fatalf("after restart: disk %s creator %q, want %q", name, d.Creator, want)
		}
	}
	if _, err := m.DiskInfo(ctx, "bad"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DiskInfo of the refused disk: %v, want ErrNotFound", err)
	}
}
