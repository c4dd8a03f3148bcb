package blockstore_test

import (
	"testing"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/blockstore/storetest"
)

func TestMemoryConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) blockstore.Store { return blockstore.NewMemory() })
}
