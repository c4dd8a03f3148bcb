package heal

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/placement"
)

// A pass decides in two steps: gather asks the store and the placement
// sets who holds each block of the catalog, and decide, a pure function of
// those answers, says what to copy, what to drop and what to count.

// observation is what gather saw of the catalog's blocks.
type observation struct {
	blocks []blockSeen
	// asked is the redundancy account's clock before the questions went
	// out: the answers are as of then (see Redundancy.Observe).
	asked uint64
}

// blockSeen is one block of the catalog as gather saw it.
type blockSeen struct {
	c        cid.Cid
	replicas int                // copies wanted: the most any root reaching it asks for
	set      []placement.Member // where placement puts it among the live members
	here     bool               // this node's store holds it
	local    bool               // a root this node uses reaches it: kept here as a cache
	// holders are the members of set, this node aside, that confirmed a
	// copy. An unreachable member is not among them: it holds nothing as
	// far as this pass knows.
	holders []string
}

// plan is what one pass decided.
type plan struct {
	fetch   []cid.Cid            // blocks to copy here
	sources map[cid.Cid][]string // peers known to hold them
	drop    []cid.Cid            // surplus copies to remove
	// short counts the blocks some live member of their placement set
	// did not confirm: copies other nodes' passes should be making.
	short int
	// counted are the confirmed copies of every block, for the
	// redundancy account.
	counted []holding
}

// holding is the members whose copies of one block count.
type holding struct {
	c       cid.Cid
	holders []string
}

// gather asks the placement sets of the blocks of want (with the
// replicas each needs) who holds them, and this node's store which it
// holds. Blocks of other nodes' shares are asked about too, only to count
// their copies: this node reports every disk's redundancy. local marks
// the blocks of the roots this node uses.
func (h *Healer) gather(ctx context.Context, members []placement.Member, want map[cid.Cid]int, local map[cid.Cid]bool) (*observation, error) {
	asked := h.cfg.Redundancy.Clock()
	cids := slices.Collect(maps.Keys(want))
	held, err := h.cfg.Store.HasMany(ctx, cids)
	if err != nil {
		return nil, fmt.Errorf("heal: %w", err)
	}
	obs := &observation{blocks: make([]blockSeen, len(cids)), asked: asked}
	ask := map[string][]int{} // peer → the indexes in obs.blocks asked of it
	for i, c := range cids {
		r := want[c]
		set := placement.Place(c.Hash(), members, r)
		obs.blocks[i] = blockSeen{c: c, replicas: r, set: set, here: held[i], local: local[c]}
		for _, m := range set {
			if m.ID != h.cfg.Self {
				ask[m.ID] = append(ask[m.ID], i)
			}
		}
	}
	asks := make(map[string][]cid.Cid, len(ask))
	for peer, idx := range ask {
		cids := make([]cid.Cid, len(idx))
		for i, b := range idx {
			cids[i] = obs.blocks[b].c
		}
		asks[peer] = cids
	}
	askAll(ctx, h.cfg.Peers, h.log, asks, func(peer string, i int) {
		b := &obs.blocks[ask[peer][i]]
		b.holders = append(b.holders, peer)
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return obs, nil
}

// decide plans a pass of node self from what gather saw: copy here the
// blocks whose placement set holds self and that self lacks (from the
// members that confirmed them), and drop the copies self holds outside
// the placement set once it is safe: the block is data (map nodes stay
// everywhere: every node walks them), no root self uses reaches it, and
// the full placement set of replicas members confirmed its copies. A
// copy counts for a member of the placement set that confirmed it; self's
// own copy counts only inside the set.
func decide(obs *observation, self string) *plan {
	p := &plan{sources: map[cid.Cid][]string{}, counted: make([]holding, 0, len(obs.blocks))}
	for _, b := range obs.blocks {
		mine := contains(b.set, self)
		counted := b.holders
		if mine && b.here {
			counted = append(slices.Clip(b.holders), self)
		}
		p.counted = append(p.counted, holding{c: b.c, holders: counted})
		if len(counted) < len(b.set) {
			p.short++
		}
		switch {
		case mine && !b.here:
			p.fetch = append(p.fetch, b.c)
			p.sources[b.c] = b.holders
		case !mine && b.here && !b.local && b.c.Type() == blockstore.CodecRaw &&
			len(b.set) == b.replicas && len(b.holders) == b.replicas:
			p.drop = append(p.drop, b.c)
		}
	}
	return p
}
