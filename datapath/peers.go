package datapath

import (
	"context"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
)

// Peers is what a transfer needs from the block exchange; exchange.Client
// satisfies it. GetEach hands the blocks peer holds among cids to fn as
// they arrive, their bytes valid only until fn returns; it must verify
// every block first and report a block that does not match its CID with
// an error matching exchange.ErrBadBlock, and return fn's error as it is.
// Both must be safe for concurrent use and return promptly when ctx ends.
type Peers interface {
	Has(ctx context.Context, peer string, cids []cid.Cid) ([]bool, error)
	GetEach(ctx context.Context, peer string, cids []cid.Cid, fn func([]blockstore.Block) error) error
}

// Store is what a transfer needs from the local block store. It must be
// safe for concurrent use.
type Store interface {
	blockstore.Getter
	blockstore.Haser
	blockstore.Putter
}
