package mesh

import (
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// gatedHost is the host as seen by every weft protocol, memberlist's and the
// DHT's included: handlers run only for admitted peers, and outbound streams
// open only to admitted peers.
type gatedHost struct {
	host.Host
	admission *admission
}

var _ host.Host = (*gatedHost)(nil)

func (g *gatedHost) SetStreamHandler(pid protocol.ID, h network.StreamHandler) {
	g.Host.SetStreamHandler(pid, g.admission.gate(h))
}

func (g *gatedHost) SetStreamHandlerMatch(pid protocol.ID, match func(protocol.ID) bool, h network.StreamHandler) {
	g.Host.SetStreamHandlerMatch(pid, match, g.admission.gate(h))
}

// NewStream connects to p with the addresses in the peerstore if needed,
// waits for p's admission and opens the stream.
func (g *gatedHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	if g.Network().Connectedness(p) != network.Connected {
		if err := g.Connect(ctx, peer.AddrInfo{ID: p}); err != nil {
			return nil, fmt.Errorf("connect %s: %w", p, err)
		}
	}
	if err := g.admission.wait(ctx, p); err != nil {
		return nil, err // the caller names p
	}
	s, err := g.Host.NewStream(ctx, p, pids...)
	if err != nil {
		return nil, fmt.Errorf("open %v to %s: %w", pids, p, err)
	}
	return s, nil
}
