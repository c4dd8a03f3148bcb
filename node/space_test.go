package node

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/blockstore/storetest"
)

func TestSpaceState(t *testing.T) {
	const mib = 1 << 20
	if got := reserve(0); got != DefaultReserve {
		t.Fatalf("reserve(0) = %d, want the default %d", got, DefaultReserve)
	}
	if got := reserve(1 * mib); got != storeFloor {
		t.Fatalf("reserve(1 MiB) = %d, want the store's floor %d", got, storeFloor)
	}
	for _, tc := range []struct {
		free, reserve int64
		want          string
	}{
		{0, 256 * mib, api.SpaceFull},
		{storeFloor - 1, 256 * mib, api.SpaceFull},
		{storeFloor, 256 * mib, api.SpaceLow},
		{256*mib - 1, 256 * mib, api.SpaceLow},
		{256 * mib, 256 * mib, api.SpaceOK},
		{storeFloor, storeFloor, api.SpaceOK},
	} {
		if got := spaceState(tc.free, tc.reserve); got != tc.want {
			t.Errorf("spaceState(%d, %d) = %q, want %q", tc.free, tc.reserve, got, tc.want)
		}
	}
}

// TestReservedStoreKeepsTheReserve: heal's puts are refused, with
// ErrNoSpace and nothing stored, when they would leave less than the
// reserve free; the same put passes when the reserve allows it.
func TestReservedStoreKeepsTheReserve(t *testing.T) {
	dir := t.TempDir()
	mem := blockstore.NewMemory()
	b := storetest.NewBlock(rand.New(rand.NewPCG(1, 2)), 64<<10)
	full := reservedStore{Store: mem, reserve: peerReserve{dir: dir, keep: freeBytes(dir) + 1<<30}}
	if err := full.PutMany(context.Background(), []blockstore.Block{b}); !errors.Is(err, blockstore.ErrNoSpace) {
		t.Fatalf("put into the reserve: got %v, want ErrNoSpace", err)
	}
	if ok, _ := mem.Has(context.Background(), b.CID); ok {
		t.Fatal("a refused block was stored")
	}
	room := reservedStore{Store: mem, reserve: peerReserve{dir: dir, keep: 1 << 20}}
	if err := room.Put(context.Background(), b); err != nil {
		t.Fatalf("put above the reserve: %v", err)
	}
	if ok, _ := mem.Has(context.Background(), b.CID); !ok {
		t.Fatal("an admitted block was not stored")
	}
}
