package mesh

import (
	"context"
	"testing"
	"time"

	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/mesh/meshnet/meshnettest"
)

// TestMeshConformance runs the meshnet conformance suite over two libp2p
// meshes on loopback, once per transport, since streams behave
// differently over yamux (TCP) and QUIC: the same contract the in-memory
// network passes.
func TestMeshConformance(t *testing.T) {
	for _, tr := range []struct{ name, listen string }{
		{"TCP", "/ip4/127.0.0.1/tcp/0"},
		{"QUIC", "/ip4/127.0.0.1/udp/0/quic-v1"},
	} {
		t.Run(tr.name, func(t *testing.T) {
			meshnettest.Run(t, func(t *testing.T, da, db meshnet.StateDelegate) (meshnet.Network, meshnet.Network) {
				secret := newSecret(t)
				listen := []string{tr.listen}
				a := newTestMesh(t, Config{Secret: secret, Site: "a", State: da, Listen: listen})
				b := newTestMesh(t, Config{Secret: secret, Site: "b", State: db, Listen: listen})
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if _, err := b.Join(ctx, a.Addrs()); err != nil {
					t.Fatalf("join: %v", err)
				}
				return a, b
			})
		})
	}
}
