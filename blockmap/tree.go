package blockmap

import (
	"context"
	"fmt"
	"slices"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
)

// Store is what a block map needs from a block store.
type Store interface {
	blockstore.Getter
	blockstore.Putter
}

// Maps reads and writes block maps in a store, keeping recently used
// decoded nodes in memory. Nodes are immutable, so the cache never needs
// invalidation. Safe for concurrent use.
type Maps struct {
	store Store
	cache *lru.Cache[string, *Node]
}

// New returns Maps over store caching up to cacheNodes decoded nodes
// (a node is at most about 10 KiB).
func New(store Store, cacheNodes int) *Maps {
	if cacheNodes < 16 {
		cacheNodes = 16
	}
	cache, err := lru.New[string, *Node](cacheNodes)
	if err != nil {
		panic(err) // only for a non-positive size
	}
	return &Maps{store: store, cache: cache}
}

// Levels returns the number of levels of the map of a disk of n blocks.
func Levels(n uint64) int {
	levels := 1
	for capacity := uint64(Fanout); capacity < n && levels < MaxLevels; capacity *= Fanout {
		levels++
	}
	return levels
}

// Change sets block Index to CID; cid.Undef means the block is zero.
type Change struct {
	Index uint64
	CID   cid.Cid
}

// Load returns the decoded node c, from the cache or the store.
func (m *Maps) Load(ctx context.Context, c cid.Cid) (*Node, error) {
	if n, ok := m.cache.Get(c.KeyString()); ok {
		return n, nil
	}
	if c.Type() != blockstore.CodecDagCBOR {
		return nil, fmt.Errorf("map node %s: codec %#x is not dag-cbor", c, c.Type())
	}
	data, err := m.store.Get(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("load map node: %w", err)
	}
	n, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", c, err)
	}
	m.cache.Add(c.KeyString(), n)
	return n, nil
}

func slotOf(index uint64, level uint8) uint8 {
	return uint8(index >> (8 * uint(level)))
}

func checkRoot(n *Node, levels int) error {
	if int(n.Level) != levels-1 {
		return fmt.Errorf("map root at level %d, want %d", n.Level, levels-1)
	}
	return nil
}

// Lookup returns the CID of block index in the map rooted at root with the
// given number of levels, or cid.Undef if the block is zero.
func (m *Maps) Lookup(ctx context.Context, root cid.Cid, levels int, index uint64) (cid.Cid, error) {
	c := root
	for first := true; c.Defined(); first = false {
		n, err := m.Load(ctx, c)
		if err != nil {
			return cid.Undef, err
		}
		if first {
			if err := checkRoot(n, levels); err != nil {
				return cid.Undef, err
			}
		}
		slot := slotOf(index, n.Level)
		i, found := slices.BinarySearchFunc(n.Entries, slot, func(e Entry, s uint8) int { return int(e.Slot) - int(s) })
		if !found {
			return cid.Undef, nil
		}
		if n.Level == 0 {
			return n.Entries[i].CID, nil
		}
		c = n.Entries[i].CID
	}
	return cid.Undef, nil
}

// Update applies changes to the map rooted at root and returns the new root
// (cid.Undef if the map is now empty). Only nodes on the paths of changed
// blocks are rewritten; the new nodes are durable in the store before Update
// returns. Later changes to the same index win. Indexes must be below
// Fanout^levels.
func (m *Maps) Update(ctx context.Context, root cid.Cid, levels int, changes []Change) (cid.Cid, error) {
	if levels < 1 || levels > MaxLevels {
		return cid.Undef, fmt.Errorf("update map: %d levels", levels)
	}
	if len(changes) == 0 {
		return root, nil
	}
	sorted := slices.Clone(changes)
	slices.SortStableFunc(sorted, func(a, b Change) int {
		switch {
		case a.Index < b.Index:
			return -1
		case a.Index > b.Index:
			return 1
		}
		return 0
	})
	if levels < MaxLevels {
		if limit := uint64(1) << (8 * uint(levels)); sorted[len(sorted)-1].Index >= limit {
			return cid.Undef, fmt.Errorf("update map: index %d beyond %d blocks", sorted[len(sorted)-1].Index, limit)
		}
	}
	var written []blockstore.Block
	newRoot, err := m.update(ctx, root, uint8(levels-1), true, sorted, &written)
	if err != nil {
		return cid.Undef, err
	}
	if err := m.store.PutMany(ctx, written); err != nil {
		return cid.Undef, fmt.Errorf("update map: store nodes: %w", err)
	}
	return newRoot, nil
}

// update rewrites the subtree c at level for changes, which all fall in it
// and are sorted by index, appending new nodes to written.
func (m *Maps) update(ctx context.Context, c cid.Cid, level uint8, isRoot bool, changes []Change, written *[]blockstore.Block) (cid.Cid, error) {
	var old []Entry
	if c.Defined() {
		n, err := m.Load(ctx, c)
		if err != nil {
			return cid.Undef, err
		}
		if n.Level != level {
			return cid.Undef, fmt.Errorf("map node %s at level %d, want %d", c, n.Level, level)
		}
		old = n.Entries
	}
	entries := make([]Entry, 0, len(old)+len(changes))
	oi := 0
	for len(changes) > 0 {
		slot := slotOf(changes[0].Index, level)
		end := 1
		for end < len(changes) && slotOf(changes[end].Index, level) == slot {
			end++
		}
		group := changes[:end]
		changes = changes[end:]
		for oi < len(old) && old[oi].Slot < slot {
			entries = append(entries, old[oi])
			oi++
		}
		var prev cid.Cid
		if oi < len(old) && old[oi].Slot == slot {
			prev = old[oi].CID
			oi++
		}
		next := group[len(group)-1].CID
		if level > 0 {
			var err error
			if next, err = m.update(ctx, prev, level-1, false, group, written); err != nil {
				return cid.Undef, err
			}
		} else if next.Defined() && next.Type() != blockstore.CodecRaw {
			return cid.Undef, fmt.Errorf("block %d: data CID %s is not raw", group[0].Index, next)
		}
		if next.Defined() {
			entries = append(entries, Entry{Slot: slot, CID: next})
		}
	}
	entries = append(entries, old[oi:]...)
	if len(entries) == 0 {
		return cid.Undef, nil
	}
	n := &Node{Level: level, Entries: entries}
	data, err := Encode(n)
	if err != nil {
		return cid.Undef, err
	}
	b := blockstore.NewBlock(blockstore.CodecDagCBOR, data)
	m.cache.Add(b.CID.KeyString(), n)
	*written = append(*written, b)
	return b.CID, nil
}

// Walk calls fn for every non-zero block with index in [from, to), in
// ascending order. It stops at the first error fn returns.
func (m *Maps) Walk(ctx context.Context, root cid.Cid, levels int, from, to uint64, fn func(index uint64, c cid.Cid) error) error {
	if !root.Defined() || from >= to {
		return nil
	}
	n, err := m.Load(ctx, root)
	if err != nil {
		return err
	}
	if err := checkRoot(n, levels); err != nil {
		return err
	}
	return m.walk(ctx, n, 0, from, to, fn)
}

func (m *Maps) walk(ctx context.Context, n *Node, base, from, to uint64, fn func(uint64, cid.Cid) error) error {
	span := uint64(1) << (8 * uint(n.Level)) // blocks under one slot
	for _, e := range n.Entries {
		start := base + uint64(e.Slot)*span
		if start >= to {
			break
		}
		if start+span <= from {
			continue
		}
		if n.Level == 0 {
			if err := fn(start, e.CID); err != nil {
				return err
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		child, err := m.Load(ctx, e.CID)
		if err != nil {
			return err
		}
		if child.Level != n.Level-1 {
			return fmt.Errorf("map node %s at level %d under level %d", e.CID, child.Level, n.Level)
		}
		if err := m.walk(ctx, child, start, from, to, fn); err != nil {
			return err
		}
	}
	return nil
}

// Mark calls visit for every CID reachable from root: map nodes and data
// blocks. When visit returns false for a map node, its subtree is skipped;
// collectors use this to visit subtrees shared between roots only once.
func (m *Maps) Mark(ctx context.Context, root cid.Cid, visit func(cid.Cid) bool) error {
	if !root.Defined() || !visit(root) {
		return nil
	}
	n, err := m.Load(ctx, root)
	if err != nil {
		return err
	}
	for _, e := range n.Entries {
		if n.Level == 0 {
			visit(e.CID)
			continue
		}
		if err := m.Mark(ctx, e.CID, visit); err != nil {
			return err
		}
	}
	return nil
}

// Count returns the number of non-zero blocks in the map.
func (m *Maps) Count(ctx context.Context, root cid.Cid) (uint64, error) {
	if !root.Defined() {
		return 0, nil
	}
	n, err := m.Load(ctx, root)
	if err != nil {
		return 0, err
	}
	if n.Level == 0 {
		return uint64(len(n.Entries)), nil
	}
	var total uint64
	for _, e := range n.Entries {
		c, err := m.Count(ctx, e.CID)
		if err != nil {
			return 0, err
		}
		total += c
	}
	return total, nil
}
