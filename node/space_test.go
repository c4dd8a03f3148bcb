package node

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/blockstore/storetest"
	"github.com/weft-mesh/weft/volume"
)

func TestSpaceState(t *testing.T) {
	const mib = 1 << 20
	if got := reserve(0); got != DefaultReserve {
		t.Fatalf("reserve(0) = %d, want the default %d", got, DefaultReserve)
	}
	if got := reserve(100 * mib); got != 100*mib {
		t.Fatalf("reserve(100 MiB) = %d, want it as configured", got)
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

// fixedFree is a file system with free bytes free.
func fixedFree(free int64) func() (int64, error) {
	return func() (int64, error) { return free, nil }
}

// TestReservedStoreKeepsTheReserve: heal's puts are refused, with
// ErrNoSpace and nothing stored, when they would leave less than the
// reserve free; the same put passes when the reserve allows it.
func TestReservedStoreKeepsTheReserve(t *testing.T) {
	mem := blockstore.NewMemory()
	peers := volume.NewPeerBlocks(time.Now, time.Minute)
	b := storetest.NewBlock(rand.New(rand.NewPCG(1, 2)), 64<<10)
	full := reservedStore{Store: mem, reserve: &peerReserve{free: fixedFree(100 << 20), keep: 100<<20 - 32<<10}, peers: peers}
	if err := full.PutMany(context.Background(), []blockstore.Block{b}); !errors.Is(err, blockstore.ErrNoSpace) {
		t.Fatalf("put into the reserve: got %v, want ErrNoSpace", err)
	}
	if ok, _ := mem.Has(context.Background(), b.CID); ok {
		t.Fatal("a refused block was stored")
	}
	room := reservedStore{Store: mem, reserve: &peerReserve{free: fixedFree(100 << 20), keep: 1 << 20}, peers: peers}
	if err := room.Put(context.Background(), b); err != nil {
		t.Fatalf("put above the reserve: %v", err)
	}
	if ok, _ := mem.Has(context.Background(), b.CID); !ok {
		t.Fatal("an admitted block was not stored")
	}
	if !peers.InGrace(b.CID) {
		t.Fatal("a block heal stored is not kept by gc for the grace period")
	}
	if room.reserve.inflight != 0 {
		t.Fatalf("%d bytes still counted in flight after the put returned", room.reserve.inflight)
	}
}

// TestReserveCountsPutsInFlight: bytes admitted but not yet written count
// as used, so two puts that each fit the free space above the reserve,
// but not together, cannot both be admitted; once the first returns, its
// bytes count through the file system's free space instead.
func TestReserveCountsPutsInFlight(t *testing.T) {
	const mib = 1 << 20
	free := int64(100 * mib)
	r := &peerReserve{free: func() (int64, error) { return free, nil }, keep: 90 * mib}
	release, err := r.admit(6 * mib)
	if err != nil {
		t.Fatalf("first 6 MiB with 10 MiB above the reserve: %v", err)
	}
	if err := r.room(6 * mib); !errors.Is(err, blockstore.ErrNoSpace) {
		t.Fatalf("room for 6 MiB more while 6 MiB are being written: got %v, want ErrNoSpace", err)
	}
	if _, err := r.admit(6 * mib); !errors.Is(err, blockstore.ErrNoSpace) {
		t.Fatalf("second 6 MiB while the first is being written: got %v, want ErrNoSpace", err)
	}
	second, err := r.admit(4 * mib)
	if err != nil {
		t.Fatalf("4 MiB that still fit: %v", err)
	}
	free -= 6 * mib // the first put is on disk
	release()
	release() // a second call changes nothing
	second()
	if r.inflight != 0 {
		t.Fatalf("%d bytes in flight after every put returned", r.inflight)
	}
	if _, err := r.admit(4*mib + 1); !errors.Is(err, blockstore.ErrNoSpace) {
		t.Fatalf("4 MiB and a byte with 4 MiB above the reserve: got %v, want ErrNoSpace", err)
	}

	failing := &peerReserve{free: func() (int64, error) { return 0, errors.New("statfs: input/output error") }, keep: 1}
	if _, err := failing.admit(1); err == nil || errors.Is(err, blockstore.ErrNoSpace) || !strings.Contains(err.Error(), "input/output error") {
		t.Fatalf("admit when the free space cannot be read: got %v, want the statfs error, not out of space", err)
	}
}
