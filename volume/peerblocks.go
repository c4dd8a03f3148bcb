package volume

import (
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
)

// DefaultPeerBlockGrace is how long GC keeps a block stored for a peer
// that no root it knows reaches: long enough for the catalog entry naming
// the block's root, pushed or gossiped after the blocks, to arrive.
const DefaultPeerBlockGrace = 10 * time.Minute

// PeerBlocks remembers the blocks this node stored on behalf of other
// members (pushed to it by a flush, a replication or a heal, or copied by
// its own heal) and when. A member pushes a root's blocks before the
// catalog entry naming the root, so between the two no root this node
// knows reaches them; GC keeps them for the grace period rather than
// sweeping copies the pusher already counts. The record is in memory: a
// restart forgets it. The window that leaves is small, as a pusher sends
// the entry right after the blocks, and a restart in it must also be
// followed by a gc before the entry arrives.
type PeerBlocks struct {
	now   func() time.Time
	grace time.Duration

	mu     sync.Mutex
	stored map[string]time.Time // block key -> when it was last stored
	order  []storedAt           // in the order stored, for expiry
}

type storedAt struct {
	key string
	at  time.Time
}

// NewPeerBlocks returns an empty record whose blocks GC keeps for grace
// after they were stored, on the clock now.
func NewPeerBlocks(now func() time.Time, grace time.Duration) *PeerBlocks {
	return &PeerBlocks{now: now, grace: grace, stored: make(map[string]time.Time)}
}

// Storing records bs as stored now. Callers call it before the store's
// put, so a collection that began before the put returned sees it.
func (p *PeerBlocks) Storing(bs []blockstore.Block) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expire(now)
	for _, b := range bs {
		k := b.CID.KeyString()
		p.stored[k] = now
		p.order = append(p.order, storedAt{k, now})
	}
}

// InGrace reports whether c was stored for a peer less than the grace
// period ago.
func (p *PeerBlocks) InGrace(c cid.Cid) bool {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expire(now)
	_, ok := p.stored[c.KeyString()]
	return ok
}

// expire forgets the blocks stored a grace period or longer before now.
func (p *PeerBlocks) expire(now time.Time) {
	n := 0
	for _, s := range p.order {
		if now.Sub(s.at) < p.grace {
			break
		}
		if p.stored[s.key].Equal(s.at) { // not stored again since
			delete(p.stored, s.key)
		}
		n++
	}
	p.order = p.order[n:] // append reallocates without the expired head
}
