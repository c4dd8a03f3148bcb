package heal

import (
	"context"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockmap"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/placement"
)

// Peers is the block exchange with other nodes, which are named by their
// placement IDs. The mesh's exchange client satisfies it.
type Peers interface {
	Has(ctx context.Context, peer string, cids []cid.Cid) ([]bool, error)
	// Get returns the blocks peer holds, verified (and marked hashed, so
	// storing them does not hash them again).
	Get(ctx context.Context, peer string, cids []cid.Cid) (map[cid.Cid]blockstore.Block, error)
	// GetEach hands the verified (and marked hashed) blocks of each
	// response to fn as they arrive; their bytes are valid only until fn
	// returns, so bulk copies store them in fn from a reused buffer
	// instead of a fresh one per response. fn's error is returned as is.
	GetEach(ctx context.Context, peer string, cids []cid.Cid, fn func([]blockstore.Block) error) error
	Put(ctx context.Context, peer string, bs []blockstore.Block) error
}

// Store is the local block store as heal uses it.
type Store interface {
	blockstore.Getter
	blockstore.ManyHaser
	blockstore.Putter
	blockstore.Deleter
}

// Root is one root of the catalog that must stay at Replicas copies.
type Root struct {
	Root     cid.Cid
	Replicas int
	// Local marks a root this node uses itself (its disks and replicas):
	// it keeps their blocks as a cache even outside their placement sets.
	Local bool
}

// hasBatch bounds the CIDs in one Has request.
const hasBatch = 4096

// askHas asks peer which of cids it holds, in batches; the result is
// parallel to cids.
func askHas(ctx context.Context, peers Peers, peer string, cids []cid.Cid) ([]bool, error) {
	out := make([]bool, 0, len(cids))
	for start := 0; start < len(cids); start += hasBatch {
		end := min(start+hasBatch, len(cids))
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		has, err := peers.Has(ctx, peer, cids[start:end])
		cancel()
		if err != nil {
			return nil, err
		}
		out = append(out, has...)
	}
	return out, nil
}

// collect visits every CID reachable from roots once and returns, for each,
// the largest replication factor of a root reaching it and whether a local
// root reaches it. Local roots are walked first, so a subtree they share
// with another root is seen as local.
func collect(ctx context.Context, maps *blockmap.Maps, roots []Root) (map[cid.Cid]int, map[cid.Cid]bool, error) {
	want := map[cid.Cid]int{}
	local := map[cid.Cid]bool{}
	for _, pass := range []bool{true, false} {
		for _, r := range roots {
			if r.Local != pass || !r.Root.Defined() {
				continue
			}
			err := maps.Mark(ctx, r.Root, func(c cid.Cid) bool {
				n, seen := want[c]
				want[c] = max(n, r.Replicas)
				if r.Local {
					local[c] = true
				}
				return !seen
			})
			if err != nil {
				return nil, nil, err
			}
		}
	}
	return want, local, nil
}

// contains reports whether id is in set.
func contains(set []placement.Member, id string) bool {
	for _, m := range set {
		if m.ID == id {
			return true
		}
	}
	return false
}
