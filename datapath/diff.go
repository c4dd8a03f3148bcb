package datapath

import (
	"context"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockmap"
	"github.com/weft-mesh/weft/blockstore"
)

const (
	// nodeBatch is the map nodes asked per request.
	nodeBatch = 256
	// nodeSizeEstimate is what a map node is charged before it arrives.
	nodeSizeEstimate = 8 << 10
)

// diff walks the map under root level by level, fetching and storing the
// map nodes missing here, and returns the distinct data blocks missing
// here in map order, with the place of each among all the distinct data
// blocks of the map (the same on every node). Every leaf is checked: a
// node being present does not mean its subtree is.
func (f *fetcher) diff(ctx context.Context, root cid.Cid) (missing []cid.Cid, ordinals []int, err error) {
	distinct := 0
	seen := make(map[cid.Cid]bool)
	level := []cid.Cid{root}
	want := -1 // level of the nodes in level, known once the root is read
	for len(level) > 0 {
		nodes, err := f.loadNodes(ctx, level)
		if err != nil {
			return nil, nil, err
		}
		var next []cid.Cid
		for i, n := range nodes {
			if want >= 0 && int(n.Level) != want {
				return nil, nil, fmt.Errorf("map node %s at level %d, want %d", level[i], n.Level, want)
			}
			if n.Level > 0 {
				for _, e := range n.Entries {
					if e.CID.Type() != blockstore.CodecDagCBOR {
						return nil, nil, fmt.Errorf("map node %s: child %s is not a map node", level[i], e.CID)
					}
					if !seen[e.CID] {
						seen[e.CID] = true
						next = append(next, e.CID)
					}
				}
				continue
			}
			var total, skipped int64
			for _, e := range n.Entries {
				if e.CID.Type() != blockstore.CodecRaw {
					return nil, nil, fmt.Errorf("map node %s: data block %s is not raw", level[i], e.CID)
				}
				if seen[e.CID] {
					continue
				}
				seen[e.CID] = true
				total++
				distinct++
				has, err := f.store.Has(ctx, e.CID)
				if err != nil {
					return nil, nil, fmt.Errorf("check local %s: %w", e.CID, err)
				}
				if has {
					skipped++
				} else {
					missing = append(missing, e.CID)
					ordinals = append(ordinals, distinct-1)
				}
			}
			f.track.found(total, skipped)
		}
		if want < 0 {
			want = int(nodes[0].Level)
		}
		want--
		level = next
	}
	return missing, ordinals, nil
}

// loadNodes returns the decoded map nodes cids, fetching from the sources
// (origin first) and storing those missing here.
func (f *fetcher) loadNodes(ctx context.Context, cids []cid.Cid) ([]*blockmap.Node, error) {
	raw := make(map[cid.Cid][]byte, len(cids))
	var absent []cid.Cid
	for _, c := range cids {
		data, err := f.store.Get(ctx, c)
		switch {
		case err == nil:
			raw[c] = data
		case errors.Is(err, blockstore.ErrNotFound), errors.Is(err, blockstore.ErrCorrupt):
			absent = append(absent, c)
		default:
			return nil, fmt.Errorf("read map node %s: %w", c, err)
		}
	}
	for start := 0; start < len(absent); start += nodeBatch {
		batch := absent[start:min(start+nodeBatch, len(absent))]
		got, err := f.fetch(ctx, batch, nil, nodeSizeEstimate, false)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, ctxErr
			}
			return nil, fmt.Errorf("fetch %d map nodes: %w", len(batch), err)
		}
		for c, d := range got {
			raw[c] = d
		}
	}
	nodes := make([]*blockmap.Node, len(cids))
	for i, c := range cids {
		n, err := blockmap.Decode(raw[c])
		if err != nil {
			return nil, fmt.Errorf("map node %s: %w", c, err)
		}
		nodes[i] = n
	}
	return nodes, nil
}
