package volume

import (
	"context"
	"runtime"
	"sync"

	"github.com/ipfs/go-cid"
)

// blockRead is the part of one block a read needs.
type blockRead struct {
	index   int64
	inBlock int64
	dst     []byte
}

// readCommittedBlocks fills each read from the map at root. A read spanning
// several blocks fetches and verifies them on every core at once: a single
// sequential stream (a FUSE reader, a 1 MiB NBD read) is otherwise bound to
// one core's hashing speed. It returns the first error.
func (m *Manager) readCommittedBlocks(ctx context.Context, root cid.Cid, levels int, reads []blockRead) error {
	if len(reads) == 1 {
		r := reads[0]
		return m.readCommitted(ctx, root, levels, r.index, r.inBlock, r.dst)
	}
	workers := min(len(reads), runtime.GOMAXPROCS(0))
	next := make(chan blockRead, len(reads))
	for _, r := range reads {
		next <- r
	}
	close(next)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range next {
				if errs[w] == nil {
					errs[w] = m.readCommitted(ctx, root, levels, r.index, r.inBlock, r.dst)
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// splitRead cuts [off, off+len(p)) into per-block reads.
func splitRead(p []byte, off, blockSize int64) []blockRead {
	if len(p) == 0 {
		return nil
	}
	out := make([]blockRead, 0, (off+int64(len(p))-1)/blockSize-off/blockSize+1)
	for done := int64(0); done < int64(len(p)); {
		pos := off + done
		i := pos / blockSize
		inBlock := pos - i*blockSize
		n := min(int64(len(p))-done, blockSize-inBlock)
		out = append(out, blockRead{index: i, inBlock: inBlock, dst: p[done : done+n]})
		done += n
	}
	return out
}
