package mesh

import (
	"fmt"
	"strings"

	"github.com/multiformats/go-multiaddr"
)

// ListenAddrs returns the configured listen addresses with the port the
// host bound in place of each port 0, in the configured order: what a
// node records so that it listens on the same ports after a restart.
func (m *Mesh) ListenAddrs() []string { return m.listen }

// boundListen maps each configured listen address to the address the host
// bound for it: the same address, or with a port 0 the port picked. A
// configured address the host is not listening on is an error, since
// libp2p starts when only some of its addresses could be bound (a port
// taken by another process would otherwise go unnoticed).
func boundListen(configured []string, bound []multiaddr.Multiaddr) ([]string, error) {
	out := make([]string, 0, len(configured))
	for _, c := range configured {
		ca, err := multiaddr.NewMultiaddr(c)
		if err != nil {
			return nil, fmt.Errorf("listen address %q: %w", c, err)
		}
		want := ca.String()
		found := ""
		for _, b := range bound {
			bs := b.String()
			if bs == want || (zeroPorts(bs) == want && zeroPorts(bs) != bs) {
				found = bs
				break
			}
		}
		if found == "" {
			return nil, fmt.Errorf("not listening on %s (is its port taken by another process?)", c)
		}
		out = append(out, found)
	}
	return out, nil
}

// zeroPorts returns a multiaddr string with its TCP and UDP ports set to 0.
func zeroPorts(s string) string {
	parts := strings.Split(s, "/")
	for i := 0; i+1 < len(parts); i++ {
		if parts[i] == "tcp" || parts[i] == "udp" {
			parts[i+1] = "0"
		}
	}
	return strings.Join(parts, "/")
}
