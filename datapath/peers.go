package datapath

import (
	"context"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
)

// Peers is what a transfer needs from the block exchange; exchange.Client
// satisfies it. Get must verify every block it returns and report a block
// that does not match its CID with an error matching exchange.ErrBadBlock.
// Both must be safe for concurrent use and return promptly when ctx ends.
type Peers interface {
	Has(ctx context.Context, peer string, cids []cid.Cid) ([]bool, error)
	Get(ctx context.Context, peer string, cids []cid.Cid) (map[cid.Cid]blockstore.Block, error)
}

// Store is what a transfer needs from the local block store. It must be
// safe for concurrent use.
type Store interface {
	blockstore.Getter
	blockstore.Haser
	blockstore.Putter
}
