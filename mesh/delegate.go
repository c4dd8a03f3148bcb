package mesh

import (
	"bytes"
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/libp2p/go-libp2p/core/peer"
)

// memberAddrTTL is how long gossiped member addresses stay in the peerstore
// without being gossiped again; Open also falls back on the member
// table, so expiry only costs a lookup.
const memberAddrTTL = time.Hour

// memberProtectTag protects connections to live members from the
// connection manager's trimming.
const memberProtectTag = "weft-member"

// gossipDelegate connects memberlist to the mesh. memberlist calls it from
// its own goroutines, some under its node lock, so no method blocks or
// calls back into memberlist.
type gossipDelegate struct{ m *Mesh }

var (
	_ memberlist.Delegate      = gossipDelegate{}
	_ memberlist.EventDelegate = gossipDelegate{}
	_ memberlist.AliveDelegate = gossipDelegate{}
)

func (d gossipDelegate) NodeMeta(limit int) []byte { return d.m.localMeta().encode(limit) }

func (d gossipDelegate) NotifyMsg(buf []byte) {
	if s := d.m.cfg.State; s != nil && len(buf) > 0 {
		s.NotifyMsg(bytes.Clone(buf))
	}
}

func (d gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.m.broadcasts.GetBroadcasts(overhead, limit)
}

func (d gossipDelegate) LocalState(bool) []byte {
	if s := d.m.cfg.State; s != nil {
		return s.LocalState()
	}
	return nil
}

func (d gossipDelegate) MergeRemoteState(buf []byte, _ bool) {
	if s := d.m.cfg.State; s != nil && len(buf) > 0 {
		s.MergeRemoteState(bytes.Clone(buf))
	}
}

// NotifyAlive admits a node into the member list only if its name is a
// peer ID and its address the synthetic one of that peer ID: a member
// cannot gossip a node under someone else's identity or address.
func (d gossipDelegate) NotifyAlive(n *memberlist.Node) error {
	id, err := nodeID(n)
	if err != nil {
		return err
	}
	if !n.Addr.Equal(gossipIP(id)) || n.Port != gossipPort {
		return fmt.Errorf("node %s advertises %s, want its synthetic gossip address", id, n.Address())
	}
	d.m.book.learn(id)
	return nil
}

func (d gossipDelegate) NotifyJoin(n *memberlist.Node)   { d.m.memberUp(n) }
func (d gossipDelegate) NotifyUpdate(n *memberlist.Node) { d.m.memberUp(n) }
func (d gossipDelegate) NotifyLeave(n *memberlist.Node)  { d.m.memberDown(n) }

func nodeID(n *memberlist.Node) (peer.ID, error) {
	id, err := peer.Decode(n.Name)
	if err != nil || id.String() != n.Name {
		return "", fmt.Errorf("node name %q is not a peer ID", n.Name)
	}
	return id, nil
}

// memberUp records a member that joined or updated its metadata and makes
// it dialable.
func (m *Mesh) memberUp(n *memberlist.Node) {
	id, err := nodeID(n)
	if err != nil || id == m.ID() {
		return
	}
	m.book.learn(id)
	meta, addrs, err := decodeMeta(n.Meta)
	if err != nil {
		m.log.Warn("member metadata ignored", "peer", id, "err", err)
	}
	m.members.update(id, meta, addrs)
	m.host.Peerstore().AddAddrs(id, addrs, memberAddrTTL)
	m.host.ConnManager().Protect(id, memberProtectTag)
	m.signalChange()
}

// memberDown records a member declared dead or gone.
func (m *Mesh) memberDown(n *memberlist.Node) {
	id, err := nodeID(n)
	if err != nil || id == m.ID() {
		return
	}
	m.members.remove(id, time.Now())
	m.host.ConnManager().Unprotect(id, memberProtectTag)
	m.signalChange()
}
