package mesh

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/weft-mesh/weft/mesh/meshnet"
)

// State is a member's liveness as seen by this node.
type State = meshnet.State

// memberlist v0.6 does not tell its delegates when it suspects a node, so
// a member is alive until it is declared dead or leaves.
const (
	StateAlive = meshnet.StateAlive
	StateDead  = meshnet.StateDead
	StateLeft  = meshnet.StateLeft
)

// Member is one node of the cluster as gossiped to this node. Its Addrs
// are the member's listen multiaddrs without /p2p, in text form.
type Member = meshnet.Member

// memberTable is this node's view of the other members, fed by
// memberlist's event delegate. It also keeps members that died or left,
// which memberlist's own Members omits: one that left is forgotten once
// memberlist forgets it too, one that died stays dead until it comes back
// or the operator forgets it, since memberlist's reaping of dead nodes
// (after GossipToTheDeadTime) says nothing about the node itself.
type memberTable struct {
	forgetLeftAfter time.Duration // memberlist's GossipToTheDeadTime

	mu    sync.Mutex
	nodes map[peer.ID]*memberEntry
}

type memberEntry struct {
	Member
	maddrs  []multiaddr.Multiaddr // Addrs parsed, for dialing
	leaving bool
	since   time.Time // when it died or left
}

func newMemberTable(forgetLeftAfter time.Duration) *memberTable {
	return &memberTable{forgetLeftAfter: forgetLeftAfter, nodes: make(map[peer.ID]*memberEntry)}
}

// update records a node that joined or changed, and returns it.
func (t *memberTable) update(id peer.ID, meta nodeMeta, addrs []multiaddr.Multiaddr) Member {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := &memberEntry{
		Member: Member{
			ID:    meshnet.PeerID(id),
			Site:  meta.Site,
			State: StateAlive,
			Addrs: addrStrings(addrs),
			Used:  meta.Used,
			Free:  meta.Free,
		},
		maddrs:  addrs,
		leaving: meta.Leaving,
	}
	t.nodes[id] = e
	return e.Member
}

// remove records a node that memberlist declared dead or that left: it left
// if its last metadata said it was leaving.
func (t *memberTable) remove(id peer.ID, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.nodes[id]
	if !ok {
		return
	}
	e.State = StateDead
	if e.leaving {
		e.State = StateLeft
	}
	e.since = now
}

// ErrMemberAlive is returned by Forget for a member that is alive.
var ErrMemberAlive = errors.New("member is alive")

// ErrUnknownMember is returned by Forget for a peer that is not a member.
var ErrUnknownMember = errors.New("not a member")

// forget drops a member that is dead or left from the table. A live
// member cannot be forgotten: memberlist would gossip it back at once.
func (t *memberTable) forget(id peer.ID) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.nodes[id]
	switch {
	case !ok:
		return fmt.Errorf("forget %s: %w", id, ErrUnknownMember)
	case e.State == StateAlive:
		return fmt.Errorf("forget %s: %w (stop it first; a stopped node leaves by itself)", id, ErrMemberAlive)
	}
	delete(t.nodes, id)
	return nil
}

// list returns the members sorted by ID, forgetting those that left
// longer ago than memberlist remembers them.
func (t *memberTable) list(now time.Time) []Member {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Member, 0, len(t.nodes))
	for id, e := range t.nodes {
		if e.State == StateLeft && now.Sub(e.since) > t.forgetLeftAfter {
			delete(t.nodes, id)
			continue
		}
		m := e.Member
		m.Addrs = slices.Clone(m.Addrs)
		out = append(out, m)
	}
	sortMembers(out)
	return out
}

// alive counts the members alive.
func (t *memberTable) alive() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, e := range t.nodes {
		if e.State == StateAlive {
			n++
		}
	}
	return n
}

// addrs returns the gossiped addresses of id, nil if unknown.
func (t *memberTable) addrs(id peer.ID) []multiaddr.Multiaddr {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.nodes[id]; ok {
		return slices.Clone(e.maddrs)
	}
	return nil
}

// addrStrings returns the text form of addrs.
func addrStrings(addrs []multiaddr.Multiaddr) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

func sortMembers(ms []Member) {
	slices.SortFunc(ms, func(a, b Member) int { return strings.Compare(string(a.ID), string(b.ID)) })
}
