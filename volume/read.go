package volume

import (
	"context"
	"fmt"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
)

// blockRead is the part of one block a read needs.
type blockRead struct {
	index   int64
	inBlock int64
	dst     []byte
	// shared asks for the data as a slice of the block's immutable bytes
	// (in out) instead of a copy in dst: a zero-copy reply sends it as is.
	shared bool
	out    []byte
}

// read fills r from the map at root.
func (m *Manager) read(ctx context.Context, root cid.Cid, levels int, r *blockRead) error {
	if !r.shared {
		return m.readCommitted(ctx, root, levels, r.index, r.inBlock, r.dst)
	}
	data, err := m.committedBlock(ctx, root, levels, r.index)
	if err != nil {
		return err
	}
	if data == nil {
		clear(r.dst)
		r.out = r.dst
		return nil
	}
	if r.inBlock+int64(len(r.dst)) > int64(len(data)) {
		return fmt.Errorf("block %d: %d bytes, want %d: %w", r.index, len(data), r.inBlock+int64(len(r.dst)), blockstore.ErrCorrupt)
	}
	r.out = data[r.inBlock : r.inBlock+int64(len(r.dst)) : r.inBlock+int64(len(r.dst))]
	return nil
}

// readParallelism bounds the blocks one read fetches at once: more than
// the cores, because a block not in the cache is a disk read before it is
// a hash, and a cold sequential reader (a FUSE file's readahead) waits on
// the disk, not the CPU.
const readParallelism = 8

// readCommittedBlocks fills each read from the map at root. A read spanning
// several blocks fetches and verifies them on every core at once: a single
// sequential stream (a FUSE reader, a 1 MiB NBD read) is otherwise bound to
// one core's hashing speed. It returns the first error.
func (m *Manager) readCommittedBlocks(ctx context.Context, root cid.Cid, levels int, reads []*blockRead) error {
	if len(reads) == 1 {
		return m.read(ctx, root, levels, reads[0])
	}
	workers := min(len(reads), readParallelism)
	next := make(chan *blockRead, len(reads))
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
					errs[w] = m.read(ctx, root, levels, r)
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
func splitRead(p []byte, off, blockSize int64, shared bool) []blockRead {
	if len(p) == 0 {
		return nil
	}
	out := make([]blockRead, 0, (off+int64(len(p))-1)/blockSize-off/blockSize+1)
	for done := int64(0); done < int64(len(p)); {
		pos := off + done
		i := pos / blockSize
		inBlock := pos - i*blockSize
		n := min(int64(len(p))-done, blockSize-inBlock)
		out = append(out, blockRead{index: i, inBlock: inBlock, dst: p[done : done+n], shared: shared})
		done += n
	}
	return out
}

// readSlices returns the data of reads in order: each read's shared slice, or
// its part of the caller's buffer.
func readSlices(reads []blockRead) [][]byte {
	out := make([][]byte, len(reads))
	for k, r := range reads {
		out[k] = r.dst
		if r.out != nil {
			out[k] = r.out
		}
	}
	return out
}
