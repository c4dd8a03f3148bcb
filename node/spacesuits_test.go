package node

import (
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
