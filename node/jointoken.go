package node

import (
	"fmt"
	"strings"

	"github.com/weft-mesh/weft/mesh"
)

// joinTokenPrefix starts every join token; the version lets the format
// change.
const joinTokenPrefix = "weft-join-v1:"

// JoinToken is what a new node needs to join the mesh, in one string: the
// cluster secret and the multiaddrs of a member. It is a secret: whoever
// holds it can join.
func JoinToken(secretHex string, addrs []string) (string, error) {
	if _, err := ParseClusterSecret(secretHex); err != nil {
		return "", err
	}
	if len(addrs) == 0 {
		return "", fmt.Errorf("join token: no address to join")
	}
	return joinTokenPrefix + strings.TrimSpace(secretHex) + ":" + strings.Join(addrs, ","), nil
}

// ParseJoinToken returns the secret (hex) and the member multiaddrs a join
// token holds; every address must name its peer (/p2p/<id>).
func ParseJoinToken(token string) (secretHex string, addrs []string, err error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(token), joinTokenPrefix)
	if !ok {
		return "", nil, fmt.Errorf("join token: does not start with %q (make one with: weft token)", joinTokenPrefix)
	}
	secretHex, list, ok := strings.Cut(rest, ":")
	if !ok || list == "" {
		return "", nil, fmt.Errorf("join token: no member address")
	}
	if _, err := ParseClusterSecret(secretHex); err != nil {
		return "", nil, fmt.Errorf("join token: %w", err)
	}
	for _, a := range strings.Split(list, ",") {
		if err := mesh.ValidateMemberAddr(a); err != nil {
			return "", nil, fmt.Errorf("join token: address %q: %v", a, err)
		}
		addrs = append(addrs, a)
	}
	return secretHex, addrs, nil
}

// SeedPeers makes a node's first start join addrs (from a join token): it
// records them as peers the node knew.
func SeedPeers(cfg Config, addrs []string) error {
	if len(addrs) == 0 {
		return nil
	}
	if err := mesh.SeedPeers(cfg.Path(MeshDir), addrs); err != nil {
		return fmt.Errorf("init: record the token's member: %w", err)
	}
	return nil
}
