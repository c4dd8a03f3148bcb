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
	c      cid.Cid // the block, once looked up
}

// fill completes r from data, the whole block (nil: a zero block).
func (r *blockRead) fill(data []byte) error {
	end := r.inBlock + int64(len(r.dst))
	switch {
	case data == nil:
		clear(r.dst)
	case end > int64(len(data)):
		return fmt.Errorf("block %d: %s holds %d bytes, want %d: %w", r.index, r.c, len(data), end, blockstore.ErrCorrupt)
	case r.shared:
		r.out = data[r.inBlock:end:end]
	default:
		copy(r.dst, data[r.inBlock:end])
	}
	return nil
}

// readParallelism bounds the blocks one read fetches from the store at
// once: more than the cores, because a block not in the cache is a disk
// read before it is a hash, and a cold sequential reader (a FUSE file's
// readahead) waits on the disk, not the CPU.
const readParallelism = 8

// readCommittedBlocks fills each read from the map at root. Zero blocks and
// blocks in the read cache are served at once; the rest are fetched and
// verified on several goroutines: a single sequential stream (a FUSE
// reader, a 1 MiB NBD read) is otherwise bound to one core's hashing
// speed. It returns the first error.
func (m *Manager) readCommittedBlocks(ctx context.Context, root cid.Cid, levels int, reads []*blockRead) error {
	var misses []*blockRead
	for _, r := range reads {
		c, err := m.maps.Lookup(ctx, root, levels, uint64(r.index))
		if err != nil {
			return fmt.Errorf("block %d: %w", r.index, err)
		}
		r.c = c
		if !c.Defined() {
			if err := r.fill(nil); err != nil {
				return err
			}
			continue
		}
		if data, ok := m.cache.get(c.KeyString()); ok {
			if err := r.fill(data); err != nil {
				return err
			}
			continue
		}
		misses = append(misses, r)
	}
	switch len(misses) {
	case 0:
		return nil
	case 1:
		return m.fetch(ctx, misses[0])
	}
	workers := min(len(misses), readParallelism)
	next := make(chan *blockRead, len(misses))
	for _, r := range misses {
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
					errs[w] = m.fetch(ctx, r)
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

// fetch reads r's block (looked up, not cached) from the store, verified,
// and caches it.
func (m *Manager) fetch(ctx context.Context, r *blockRead) error {
	data, err := m.store.Get(ctx, r.c)
	if err != nil {
		return fmt.Errorf("block %d: %w", r.index, err)
	}
	m.cache.add(r.c.KeyString(), data)
	return r.fill(data)
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
