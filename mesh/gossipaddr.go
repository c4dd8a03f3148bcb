package mesh

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/hashicorp/memberlist"
	"github.com/libp2p/go-libp2p/core/peer"
)

// gossipPort is the port of every synthetic gossip address. memberlist wants
// an IP and a port per node; the peer ID already says everything, so the
// port is fixed.
const gossipPort = 7946

// gossipIP is the synthetic IPv6 address memberlist knows p by: fd00::/8
// (unique local, never routed) followed by the first 15 bytes of
// sha256(p). It is a pure function of p, so a restarted node keeps it and
// memberlist sees no address conflict.
func gossipIP(p peer.ID) net.IP {
	sum := sha256.Sum256([]byte(p))
	ip := make(net.IP, net.IPv6len)
	ip[0] = 0xfd
	copy(ip[1:], sum[:net.IPv6len-1])
	return ip
}

func gossipAddrPort(p peer.ID) netip.AddrPort {
	addr, _ := netip.AddrFromSlice(gossipIP(p))
	return netip.AddrPortFrom(addr, gossipPort)
}

// gossipNodeAddr is p as memberlist's Join wants it: "name/host:port".
func gossipNodeAddr(p peer.ID) string {
	return p.String() + "/" + gossipAddrPort(p).String()
}

// gossipBook maps synthetic gossip addresses back to peer IDs. memberlist
// sometimes addresses a node by address only (Address.Name empty), so every
// peer ID the mesh ever sees is recorded here.
type gossipBook struct {
	mu    sync.RWMutex
	peers map[netip.AddrPort]peer.ID
}

func newGossipBook() *gossipBook {
	return &gossipBook{peers: make(map[netip.AddrPort]peer.ID)}
}

// learn records p's synthetic address.
func (b *gossipBook) learn(p peer.ID) {
	ap := gossipAddrPort(p)
	b.mu.RLock()
	_, known := b.peers[ap]
	b.mu.RUnlock()
	if known {
		return
	}
	b.mu.Lock()
	b.peers[ap] = p
	b.mu.Unlock()
}

// resolve returns the peer memberlist means by a: the node name if it has
// one (it must match the address), else the peer learned for the address.
func (b *gossipBook) resolve(a memberlist.Address) (peer.ID, error) {
	ap, err := netip.ParseAddrPort(a.Addr)
	if err != nil {
		return "", fmt.Errorf("gossip address %q: %w", a.Addr, err)
	}
	if a.Name != "" {
		p, err := peer.Decode(a.Name)
		if err != nil {
			return "", fmt.Errorf("gossip node name %q: %w", a.Name, err)
		}
		if gossipAddrPort(p) != ap {
			return "", fmt.Errorf("gossip address %s does not belong to %s", a.Addr, p)
		}
		b.learn(p)
		return p, nil
	}
	b.mu.RLock()
	p, ok := b.peers[ap]
	b.mu.RUnlock()
	if !ok {
		return "", fmt.Errorf("gossip address %s: unknown peer", a.Addr)
	}
	return p, nil
}
