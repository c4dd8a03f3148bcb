package mesh

import (
	"crypto/ed25519"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/weft-mesh/weft/mesh/meshnet"
)

// These helpers let the node check and read the mesh's address forms
// without importing libp2p.

// PeerIDFromKey returns the peer ID of the node with private key key.
func PeerIDFromKey(key ed25519.PrivateKey) (meshnet.PeerID, error) {
	k, err := crypto.UnmarshalEd25519PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("peer id: %w", err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		return "", fmt.Errorf("peer id: %w", err)
	}
	return meshnet.PeerID(id), nil
}

// ValidateListen checks the syntax of a listen address such as
// /ip4/0.0.0.0/tcp/4001.
func ValidateListen(addr string) error {
	if _, err := multiaddr.NewMultiaddr(addr); err != nil {
		return fmt.Errorf("multiaddr %q: %v", addr, err)
	}
	return nil
}

// ListenIPv4 returns the IPv4 address of a listen address
// (/ip4/127.0.0.2/tcp/0 gives 127.0.0.2), false if it has none.
func ListenIPv4(addr string) (string, bool) {
	a, err := multiaddr.NewMultiaddr(addr)
	if err != nil {
		return "", false
	}
	ip, err := a.ValueForProtocol(multiaddr.P_IP4)
	if err != nil {
		return "", false
	}
	return ip, true
}

// ValidateMemberAddr checks a member's address as Join and Learn take it,
// ADDR/p2p/ID.
func ValidateMemberAddr(addr string) error {
	if _, err := peer.AddrInfoFromString(addr); err != nil {
		return fmt.Errorf("member address %q: %w", addr, err)
	}
	return nil
}
