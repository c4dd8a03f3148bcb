package node

import (
	"bytes"
	"context"
	"errors"
	"github.com/weft-mesh/weft/api"
	"testing"
)

// TestRemoveSpacesuitOfEmptyDisk: a spacesuit of an empty disk (never in
// the mesh's catalog, having no root) is removed without an error saying
// it was not found.
func TestRemoveSpacesuitOfEmptyDisk(t *testing.T) {
	cl, _ := startNodeWith(t, func(c *Config) { c.Listen = []string{"/ip4/127.0.0.1/tcp/0"} })
	ctx := context.Background()
	if _, err := cl.CreateDisk(ctx, api.DiskSpec{Name: "empty", Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	sp, err := cl.Publish(ctx, "golden", "empty")
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.RemoveSpacesuit(ctx, sp.Ref); err != nil {
		t.Fatalf("remove %s: %v, want nil", sp.Ref, err)
	}
	if list, err := cl.Spacesuits(ctx); err != nil || len(list) != 0 {
		t.Fatalf("spacesuits after the removal: %+v, %v; want none", list, err)
	}
	if err := cl.RemoveSpacesuit(ctx, sp.Ref); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("remove %s again: %v, want ErrNotFound", sp.Ref, err)
	}
}

// A disk and a spacesuit cannot share a name (volume.Kind): publishing a
// spacesuit named as a disk, and creating, cloning or importing a disk
// named as a spacesuit, are refused with ErrExists, whether this node
// holds the other or only the mesh's catalog names it.
func TestDiskAndSpacesuitNamesCollide(t *testing.T) {
	cl, _ := startNodeWith(t, func(c *Config) { c.Listen = []string{"/ip4/127.0.0.1/tcp/0"} })
	ctx := context.Background()
	if _, err := cl.CreateDisk(ctx, api.DiskSpec{Name: "gold", Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Publish(ctx, "gold", "gold"); !errors.Is(err, api.ErrExists) {
		t.Fatalf("publish spacesuit gold beside disk gold: got %v, want ErrExists", err)
	}
	if _, err := cl.Publish(ctx, "image", "gold"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreateDisk(ctx, api.DiskSpec{Name: "image", Size: 1 << 20}); !errors.Is(err, api.ErrExists) {
		t.Fatalf("create disk image beside spacesuit image: got %v, want ErrExists", err)
	}
	if _, err := cl.Clone(ctx, api.Ref{Disk: "gold"}, "image", ""); !errors.Is(err, api.ErrExists) {
		t.Fatalf("clone to disk image beside spacesuit image: got %v, want ErrExists", err)
	}
	if _, err := cl.Import(ctx, api.DiskSpec{Name: "image"}, bytes.NewReader(make([]byte, 4096)), 4096); !errors.Is(err, api.ErrExists) {
		t.Fatalf("import disk image beside spacesuit image: got %v, want ErrExists", err)
	}
}
