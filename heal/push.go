package heal

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ipfs/go-cid"
	"golang.org/x/sync/errgroup"

	"github.com/weft-mesh/weft/blockmap"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/exchange"
	"github.com/weft-mesh/weft/placement"
)

// ErrTooFewNodes means fewer live nodes than a disk's replication factor:
// the copies a sync flush waits for cannot exist.
var ErrTooFewNodes = errors.New("too few live nodes for the replication factor")

// Pusher sends the blocks of a freshly committed root to their placement
// sets: the owner's half of replication. Heal repairs whatever a push
// misses (a crash, a member that was down).
type Pusher struct {
	Self string
	// Store is where pushed blocks are read: the local store, or one that
	// fetches what it lacks (FetchingStore), as an owner that adopted a
	// disk holds only some of its blocks. Has is asked of this node's
	// own copies.
	Store interface {
		blockstore.Getter
		blockstore.Haser
	}
	Maps    *blockmap.Maps
	Peers   Peers
	Members func() []placement.Member
	// Redundancy is the account the push's confirmations update: this
	// node's own copies where it is in a placement set, and each peer's
	// once it said it holds a block or acknowledged it.
	Redundancy *Redundancy
}

// PushStats says what a push did.
type PushStats struct {
	Blocks int64 // blocks new in the root
	Sent   int64 // copies sent (a block goes to up to R-1 peers)
	Bytes  int64
}

// putBatchBytes bounds one Put request.
const putBatchBytes = 8 << 20

// Push makes every block reachable from root but not from prev (cid.Undef
// for everything) held by r members of its placement set, and returns
// once they confirmed. This node counts when it is in the set.
func (p *Pusher) Push(ctx context.Context, prev, root cid.Cid, r int) (PushStats, error) {
	var st PushStats
	if !root.Defined() {
		return st, nil
	}
	// Tracked first: until the placement sets confirm them, the root's
	// new blocks count as under-replicated, even when the push fails.
	if err := p.Redundancy.Track(ctx, root); err != nil {
		return st, fmt.Errorf("push: %w", err)
	}
	members := p.Members()
	if len(members) < r {
		return st, fmt.Errorf("push %s: %d live nodes, %d copies wanted: %w", root, len(members), r, ErrTooFewNodes)
	}
	old := map[cid.Cid]bool{}
	if prev.Defined() {
		if err := p.Maps.Mark(ctx, prev, func(c cid.Cid) bool {
			if old[c] {
				return false
			}
			old[c] = true
			return true
		}); err != nil {
			return st, fmt.Errorf("push: walk previous root: %w", err)
		}
	}
	toPeer := map[string][]cid.Cid{}
	var held []cid.Cid // blocks whose placement set includes this node
	seen := map[cid.Cid]bool{}
	err := p.Maps.Mark(ctx, root, func(c cid.Cid) bool {
		if old[c] || seen[c] {
			return false // a shared subtree: pushed with prev
		}
		seen[c] = true
		st.Blocks++
		for _, m := range placement.Place(c.Hash(), members, r) {
			if m.ID == p.Self {
				held = append(held, c)
			} else {
				toPeer[m.ID] = append(toPeer[m.ID], c)
			}
		}
		return true
	})
	if err != nil {
		return st, fmt.Errorf("push: walk root: %w", err)
	}
	if err := p.confirmHere(ctx, held); err != nil {
		return st, err
	}
	// Each peer's push goes on when another's fails: a member that just
	// died must not stop the copies to the live ones, which heal would
	// otherwise make again.
	var mu sync.Mutex
	var errs []error
	var g errgroup.Group
	g.SetLimit(8)
	for peer, cids := range toPeer {
		g.Go(func() error {
			sent, bytes, err := p.pushTo(ctx, peer, cids)
			mu.Lock()
			defer mu.Unlock()
			st.Sent += sent
			st.Bytes += bytes
			if err != nil {
				errs = append(errs, err)
			}
			return nil
		})
	}
	_ = g.Wait() // the pushes return no errors: they are collected in errs
	if err := ctx.Err(); err != nil {
		return st, err
	}
	return st, errors.Join(errs...)
}

// confirmHere confirms this node's copies of cids, those it holds.
func (p *Pusher) confirmHere(ctx context.Context, cids []cid.Cid) error {
	var here []cid.Cid
	for _, c := range cids {
		ok, err := p.Store.Has(ctx, c)
		if err != nil {
			return fmt.Errorf("push: %w", err)
		}
		if ok {
			here = append(here, c)
		}
	}
	p.Redundancy.Confirm(p.Self, here)
	return nil
}

// pushTo sends peer the blocks of cids it does not hold yet, and confirms
// in the redundancy account those it holds and those it acknowledged.
func (p *Pusher) pushTo(ctx context.Context, peer string, cids []cid.Cid) (sent, bytes int64, err error) {
	has, err := askHas(ctx, p.Peers, peer, cids)
	if err != nil {
		return 0, 0, fmt.Errorf("push to %s: %w", exchange.PeerName(peer), err)
	}
	var held []cid.Cid
	for i, ok := range has {
		if ok {
			held = append(held, cids[i])
		}
	}
	p.Redundancy.Confirm(peer, held)
	var batch []blockstore.Block
	var batchBytes int
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := p.Peers.Put(ctx, peer, batch); err != nil {
			return fmt.Errorf("push to %s: %w", exchange.PeerName(peer), err)
		}
		acked := make([]cid.Cid, len(batch))
		for i, b := range batch {
			acked[i] = b.CID
		}
		p.Redundancy.Confirm(peer, acked)
		sent += int64(len(batch))
		bytes += int64(batchBytes)
		batch, batchBytes = batch[:0], 0
		return nil
	}
	for i, c := range cids {
		if has[i] {
			continue
		}
		data, err := p.Store.Get(ctx, c)
		if err != nil {
			return sent, bytes, fmt.Errorf("push %s: %w", c, err)
		}
		batch = append(batch, blockstore.Block{CID: c, Data: data})
		batchBytes += len(data)
		if batchBytes >= putBatchBytes {
			if err := flush(); err != nil {
				return sent, bytes, err
			}
		}
	}
	return sent, bytes, flush()
}
