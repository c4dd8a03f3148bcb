package node

import (
	"context"
	"fmt"
	"sync"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/heal"
	"github.com/weft-mesh/weft/internal/size"
	"github.com/weft-mesh/weft/volume"
)

// The disk-full rule. Three floors of free space on the file system of the
// home, where the block store and the disks' write overlays live:
//
//   - the overlays' floor, overlayFloor (32 MiB): writes to the disks'
//     overlays leave it free; past it NBD and FUSE clients get ENOSPC.
//     It is the block index's: a full device is fatal to Pebble, and the
//     ballast the store gives back to it when the device fills is only
//     worth anything if no overlay takes it first.
//   - the store's floor, blockstore.Options.MinFreeBytes (64 MiB): every
//     put leaves it free, so the index always has room. Below it commits
//     fail with out of space and the writes stay in the overlays, which
//     keep taking writes down to the overlays' floor.
//   - the reserve, Config.ReserveBytes (default DefaultReserve, at least
//     the store's floor, MinReserve): blocks the node stores for the mesh
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

// overlayFloor is the free space writes to the disks' overlays leave
// (volume.Config.MinFreeBytes): half the store's floor, so that commits
// stop before clients get ENOSPC, and well above the index's ballast.
var overlayFloor = storeFloor / 2

// MinReserve is the smallest reserve a config may set: the store's floor.
// A smaller one would let peers' blocks fill the space the node's own
// commits need.
var MinReserve = storeFloor

// reserve is the free space blocks from peers leave: the configured one
// (Validate keeps it at least MinReserve), the default for 0.
func reserve(configured int64) int64 {
	if configured == 0 {
		return DefaultReserve
	}
	return configured
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

// spaceStatus reads the free space of the home's file system now. If it
// cannot be read the node cannot tell how full it is: that is logged, and
// the status says full, as the peers' puts are refused (see admit).
func spaceStatus(cfg Config) SpaceStatus {
	keep := reserve(cfg.ReserveBytes)
	free, err := freeBytes(cfg.Home)
	if err != nil {
		cfg.Logger.Warn("cannot read the home's free space", "err", err)
	}
	return SpaceStatus{FreeBytes: free, ReserveBytes: keep, State: spaceState(free, keep)}
}

// peerReserve refuses blocks from peers that would leave less than keep
// bytes free on the file system. Admitted bytes count as used until their
// put returns, so concurrent puts (heal's batches, every push stream)
// cannot each see the same free space and together overshoot the reserve.
type peerReserve struct {
	free func() (int64, error) // the file system's free bytes now
	keep int64

	mu       sync.Mutex
	inflight int64 // bytes admitted whose put has not returned
}

// room returns an error matching blockstore.ErrNoSpace if n more bytes
// would eat into the reserve, without taking them (heal asks before it
// fetches; the put that follows takes them with admit).
func (r *peerReserve) room(n int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.checkLocked(n)
}

// admit takes n bytes of the room above the reserve, or returns an error
// matching blockstore.ErrNoSpace if they would eat into it. The caller
// calls release once the put has returned (the bytes are on disk, or
// were not written).
func (r *peerReserve) admit(n int64) (release func(), err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.checkLocked(n); err != nil {
		return nil, err
	}
	r.inflight += n
	return sync.OnceFunc(func() {
		r.mu.Lock()
		r.inflight -= n
		r.mu.Unlock()
	}), nil
}

func (r *peerReserve) checkLocked(n int64) error {
	free, err := r.free()
	if err != nil {
		return fmt.Errorf("refusing blocks from peers: %w", err)
	}
	if free-r.inflight-n < r.keep {
		return fmt.Errorf("%w: %s free (%s of it being written), %s from peers would eat into the %s kept for this node's own disks",
			blockstore.ErrNoSpace, size.Format(free), size.Format(r.inflight), size.Format(n), size.Format(r.keep))
	}
	return nil
}

// reservedStore is the store as heal writes into it: its copies for the
// mesh keep the reserve free, and GC keeps them for the grace period
// (volume.PeerBlocks) until the catalog names their root.
type reservedStore struct {
	heal.Store
	reserve *peerReserve
	peers   *volume.PeerBlocks
}

func (s reservedStore) Put(ctx context.Context, b blockstore.Block) error {
	return s.PutMany(ctx, []blockstore.Block{b})
}

func (s reservedStore) PutMany(ctx context.Context, bs []blockstore.Block) error {
	var n int64
	for _, b := range bs {
		n += int64(len(b.Data))
	}
	release, err := s.reserve.admit(n)
	if err != nil {
		return err
	}
	defer release()
	s.peers.Storing(bs)
	return s.Store.PutMany(ctx, bs)
}
