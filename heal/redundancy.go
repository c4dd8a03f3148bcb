package heal

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockmap"
)

// Redundancy is a node's one account of which live members hold each
// block, and so of how many blocks of a root lack copies: the figure
// every report of redundancy reads (disk info, disk ls, status, the
// dashboard, the metrics).
//
// A block counts as replicated only once R live members confirmed they
// hold it: by acknowledging the owner's push (Pusher), or by answering a
// heal pass's who-has (Healer). Nothing is assumed: a root just committed,
// or just learnt from the catalog, counts every one of its blocks as
// under-replicated until confirmations arrive, and a member that leaves
// or dies takes its confirmations with it.
//
// It is safe for concurrent use. Roots are immutable, so a root is walked
// once, when first tracked; blocks shared by several roots are confirmed
// once for all of them.
type Redundancy struct {
	maps *blockmap.Maps

	mu     sync.Mutex
	seq    uint64 // counts confirmations: see Clock
	live   map[string]bool
	blocks map[cid.Cid]*holders
	roots  map[cid.Cid][]*holders
	// gen counts the changes of any block's holders; under keeps each
	// root's last count with the gen it was made at, so that reports read
	// between changes (status, disk ls, every metrics scrape) do not count
	// every block again.
	gen   uint64
	under map[cid.Cid]underCount
}

// underCount is a root's count of blocks short of replicas holders, as of
// the account's gen.
type underCount struct {
	gen      uint64
	replicas int
	n        int64
}

// holders are the live members confirmed to hold one block, and when
// each was (the account's seq at the time, see Clock).
type holders struct {
	ids []string
	at  []uint64
}

// set records that id holds the block as of at.
func (h *holders) set(id string, at uint64) {
	if i := slices.Index(h.ids, id); i >= 0 {
		h.at[i] = max(h.at[i], at)
		return
	}
	h.ids = append(h.ids, id)
	h.at = append(h.at, at)
}

// keep keeps the holders for which ok is true.
func (h *holders) keep(ok func(id string, at uint64) bool) {
	n := 0
	for i, id := range h.ids {
		if ok(id, h.at[i]) {
			h.ids[n], h.at[n] = id, h.at[i]
			n++
		}
	}
	h.ids, h.at = h.ids[:n], h.at[:n]
}

// NewRedundancy returns an empty account whose roots are walked with maps
// and whose live members are members (placement IDs).
func NewRedundancy(maps *blockmap.Maps, members []string) *Redundancy {
	r := &Redundancy{maps: maps, blocks: map[cid.Cid]*holders{}, roots: map[cid.Cid][]*holders{}, under: map[cid.Cid]underCount{}}
	r.live = liveSet(members)
	return r
}

func liveSet(members []string) map[string]bool {
	live := make(map[string]bool, len(members))
	for _, id := range members {
		live[id] = true
	}
	return live
}

// SetMembers makes members the live members: the confirmations of any
// other node are dropped now and ignored from now on, so a block a dead
// member held counts as under-replicated again.
func (r *Redundancy) SetMembers(members []string) {
	live := liveSet(members)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.live = live
	r.gen++
	for _, h := range r.blocks {
		h.keep(func(id string, _ uint64) bool { return live[id] })
	}
}

// Clock returns the account's present: an Observe given it keeps the
// confirmations recorded since, which are newer than its answers.
func (r *Redundancy) Clock() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seq
}

// Track adds root to the account, walking it if it is new. Its blocks
// count as confirmed by whoever already confirmed them through another
// root, and by nobody otherwise.
func (r *Redundancy) Track(ctx context.Context, root cid.Cid) error {
	if !root.Defined() {
		return nil
	}
	r.mu.Lock()
	_, known := r.roots[root]
	r.mu.Unlock()
	if known {
		return nil
	}
	seen := map[cid.Cid]bool{}
	var cids []cid.Cid
	err := r.maps.Mark(ctx, root, func(c cid.Cid) bool {
		if seen[c] {
			return false
		}
		seen[c] = true
		cids = append(cids, c)
		return true
	})
	if err != nil {
		return fmt.Errorf("redundancy: walk %s: %w", root, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, known := r.roots[root]; known {
		return nil // tracked meanwhile
	}
	hs := make([]*holders, len(cids))
	for i, c := range cids {
		hs[i] = r.block(c)
	}
	r.roots[root] = hs
	return nil
}

// block returns c's entry, creating it. r.mu must be held.
func (r *Redundancy) block(c cid.Cid) *holders {
	h, ok := r.blocks[c]
	if !ok {
		h = &holders{}
		r.blocks[c] = h
	}
	return h
}

// Confirm records that holder holds cids: it acknowledged them or said so.
// A holder that is not a live member is ignored.
func (r *Redundancy) Confirm(holder string, cids []cid.Cid) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.live[holder] {
		return
	}
	r.seq++
	r.gen++
	for _, c := range cids {
		r.block(c).set(holder, r.seq)
	}
}

// Observe replaces what is known of c's holders with ids: the whole answer
// of a heal pass, which asked every member whose copy counts after Clock
// returned asked. Confirmations recorded after asked stay: they are newer
// than the answer. The ids that are not live members are left out.
func (r *Redundancy) Observe(c cid.Cid, ids []string, asked uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	h := r.block(c)
	h.keep(func(_ string, at uint64) bool { return at > asked })
	for _, id := range ids {
		if r.live[id] {
			h.set(id, asked)
		}
	}
}

// Under returns how many blocks of root (data and map nodes) fewer than
// replicas live members confirmed; it tracks root first if it is new, so
// a root nobody confirmed anything of counts all its blocks. The error is
// the walk's: root's map cannot be read here.
func (r *Redundancy) Under(ctx context.Context, root cid.Cid, replicas int) (int64, error) {
	if !root.Defined() {
		return 0, nil
	}
	if err := r.Track(ctx, root); err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if u, ok := r.under[root]; ok && u.gen == r.gen && u.replicas == replicas {
		return u.n, nil
	}
	var n int64
	for _, h := range r.roots[root] {
		if len(h.ids) < replicas {
			n++
		}
	}
	r.under[root] = underCount{gen: r.gen, replicas: replicas, n: n}
	return n, nil
}

// Retain forgets the roots not in keep, and the blocks only they reached.
// A forgotten root that is asked about again is walked again.
func (r *Redundancy) Retain(keep []cid.Cid) {
	want := make(map[cid.Cid]bool, len(keep))
	for _, c := range keep {
		want[c] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	dropped := false
	for root := range r.roots {
		if !want[root] {
			delete(r.roots, root)
			delete(r.under, root)
			dropped = true
		}
	}
	if !dropped {
		return // nothing to forget: blocks leave only with the last root that reached them
	}
	reached := map[*holders]bool{}
	for _, hs := range r.roots {
		for _, h := range hs {
			reached[h] = true
		}
	}
	for c, h := range r.blocks {
		if !reached[h] {
			delete(r.blocks, c)
		}
	}
}
