package mesh

import (
	"context"
	"testing"
	"time"

	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/mesh/meshnet/meshnettest"
)

// TestMeshConformance runs the meshnet conformance suite over two libp2p
// meshes on loopback: the same contract the in-memory network passes.
func TestMeshConformance(t *testing.T) {
	meshnettest.Run(t, func(t *testing.T, da, db meshnet.StateDelegate) (meshnet.Network, meshnet.Network) {
		secret := newSecret(t)
		a := newTestMesh(t, Config{Secret: secret, Site: "a", State: da})
		b := newTestMesh(t, Config{Secret: secret, Site: "b", State: db})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := b.Join(ctx, a.Addrs()); err != nil {
			t.Fatalf("join: %v", err)
		}
		return a, b
	})
}
