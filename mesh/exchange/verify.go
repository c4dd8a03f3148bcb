package exchange

import (
	"runtime"
	"sync"

	"github.com/weft-mesh/weft/blockstore"
)

// verifyAll checks every block against its CID and returns an error
// matching ErrBadBlock for the first that does not match. A Get response
// holds up to 16 MiB, and hashing it on one core would cap a fast link, so
// the blocks are split over the available CPUs.
func verifyAll(blocks []blockstore.Block) error {
	workers := min(runtime.GOMAXPROCS(0), len(blocks))
	if workers <= 1 {
		return verifyRange(blocks)
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	per := (len(blocks) + workers - 1) / workers
	for w := range workers {
		lo, hi := min(w*per, len(blocks)), min((w+1)*per, len(blocks))
		wg.Go(func() { errs[w] = verifyRange(blocks[lo:hi]) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// verifyRange hashes each block once, with blockstore.NewBlock, and
// replaces it with the result: a block that matches its CID then reaches
// the store marked as hashed, and is not hashed a second time there.
func verifyRange(blocks []blockstore.Block) error {
	for i, b := range blocks {
		nb := blockstore.NewBlock(b.CID.Type(), b.Data)
		if nb.CID != b.CID {
			return &BadBlockError{CID: b.CID, Got: nb.CID}
		}
		blocks[i] = nb
	}
	return nil
}
