package memnet

import (
	"testing"

	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/mesh/meshnet/meshnettest"
)

func TestNodeConformance(t *testing.T) {
	meshnettest.Run(t, func(t *testing.T, da, db meshnet.StateDelegate) (a, b meshnet.Network) {
		n := newTestNetwork(t)
		return n.Join(meshnet.TestID("a"), "site-a", da), n.Join(meshnet.TestID("b"), "site-b", db)
	})
}
