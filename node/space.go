package node

import (
	"context"
	"fmt"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/heal"
	"github.com/weft-mesh/weft/internal/size"
)

// The disk-full rule. Two floors of free space on the file system of the
// home, where the block store and the disks' write overlays live:
//
//   - the store's floor, blockstore.Options.MinFreeBytes (64 MiB): every
//     put leaves it free, so the index always has room. Below it commits
//     fail with out of space and the writes stay in the overlays, which
//     keep taking writes until the file system itself is full; then NBD
//     and FUSE clients get ENOSPC.
//   - the reserve, Config.ReserveBytes (default DefaultReserve, never
//     less than the store's floor): blocks the node stores for the mesh
//     (pushed by an owner, copied by heal) must leave it free. Below it
//     they are refused with out of space, which the sender sees, and stay
//     under-replicated until space comes back or placement moves them. The
//     space between the two floors is for the node's own disks.
//
// Nothing is latched: every check reads the file system's free space, so
// deleting files brings the node back without a restart.

// DefaultReserve is the free space blocks from peers leave when the
// config does not say.
const DefaultReserve = 256 << 20

// storeFloor is the free space every store put leaves (see blockstore.Options).
var storeFloor = blockstore.DefaultOptions().MinFreeBytes

// reserve is the free space blocks from peers leave: the configured one,
// the default for 0, never below storeFloor.
func reserve(configured int64) int64 {
	if configured == 0 {
		configured = DefaultReserve
	}
	return max(configured, storeFloor)
}

// spaceState says which floor free bytes are under.
func spaceState(free, reserve int64) string {
	switch {
	case free < storeFloor:
		return api.SpaceFull
	case free < reserve:
		return api.SpaceLow
	}
	return api.SpaceOK
}

// spaceStatus reads the free space of the home's file system now.
func spaceStatus(cfg Config) SpaceStatus {
	free, keep := freeBytes(cfg.Home), reserve(cfg.ReserveBytes)
	return SpaceStatus{FreeBytes: free, ReserveBytes: keep, State: spaceState(free, keep)}
}

// peerReserve refuses blocks from peers that would leave less than keep
// bytes free on the file system holding dir. The check is not atomic with
// the put that follows it: concurrent puts can overshoot the reserve by
// their batches (a frame each), never the store's own floor.
type peerReserve struct {
	dir  string
	keep int64
}

// admit returns an error matching blockstore.ErrNoSpace if n more bytes
// would eat into the reserve.
func (r peerReserve) admit(n int64) error {
	free := freeBytes(r.dir)
	if free-n < r.keep {
		return fmt.Errorf("%w: %s free, %s from peers would eat into the %s kept for this node's own disks",
			blockstore.ErrNoSpace, size.Format(free), size.Format(n), size.Format(r.keep))
	}
	return nil
}

// reservedStore is the store as heal writes into it: its copies for the
// mesh keep the reserve free.
type reservedStore struct {
	heal.Store
	reserve peerReserve
}

func (s reservedStore) Put(ctx context.Context, b blockstore.Block) error {
	return s.PutMany(ctx, []blockstore.Block{b})
}

func (s reservedStore) PutMany(ctx context.Context, bs []blockstore.Block) error {
	var n int64
	for _, b := range bs {
		n += int64(len(b.Data))
	}
	if err := s.reserve.admit(n); err != nil {
		return err
	}
	return s.Store.PutMany(ctx, bs)
}
