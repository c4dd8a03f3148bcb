package mesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	msmux "github.com/multiformats/go-multistream"

	"github.com/weft-mesh/weft/mesh/meshnet"
)

// dhtPrefix makes the DHT private to weft: its protocol is /weft/kad/1.0.0,
// which the public IPFS DHT never speaks.
const dhtPrefix protocol.ID = "/weft"

// Compile-time checks that the mesh is a meshnet network.
var (
	_ meshnet.Network  = (*Mesh)(nil)
	_ meshnet.Learner  = (*Mesh)(nil)
	_ meshnet.Provider = (*Mesh)(nil)
)

// Handle serves protocol p for admitted peers only (see setStreamHandler):
// h gets the mesh's lifetime, the remote peer and the stream, which is
// closed when h returns.
func (m *Mesh) Handle(p meshnet.Protocol, h meshnet.Handler) {
	m.setStreamHandler(protocol.ID(p), func(s network.Stream) {
		st := stream{s}
		defer st.Close()
		h(m.ctx, meshnet.PeerID(s.Conn().RemotePeer()), st)
	})
}

// Open opens a stream to peer to speaking p (see newStream). Its Close is
// graceful; meshnet.Abort resets it.
func (m *Mesh) Open(ctx context.Context, to meshnet.PeerID, p meshnet.Protocol) (io.ReadWriteCloser, error) {
	if m.ctx.Err() != nil {
		return nil, meshnet.ErrClosed
	}
	s, err := m.newStream(ctx, peer.ID(to), protocol.ID(p))
	var unsupported msmux.ErrNotSupported[protocol.ID]
	if errors.As(err, &unsupported) {
		return nil, fmt.Errorf("%w: %w", meshnet.ErrUnsupported, err)
	}
	if err != nil {
		return nil, err
	}
	return stream{s}, nil
}

// stream is a libp2p stream as the cluster layer sees it: read, write,
// close gracefully, or Reset to break it (meshnet.Resetter).
type stream struct{ s network.Stream }

func (s stream) Read(b []byte) (int, error)  { return s.s.Read(b) }
func (s stream) Write(b []byte) (int, error) { return s.s.Write(b) }
func (s stream) Reset() error                { return s.s.Reset() }

// Close ends the stream gracefully and makes the peer's writes fail, as
// memnet's does: a writer must not block forever on a reader that is
// gone. QUIC's Close does both (it stops the peer's sending). yamux's
// does not tell the peer that this side stopped reading, so a peer
// writing more than its window blocked until the connection died; over
// yamux Close sends end of stream, then resets. The reset follows the
// end of stream in the connection's one frame queue, so the peer still
// reads all that was written, then io.EOF (a reset after end of stream
// spares the reading side); only its writes fail.
func (s stream) Close() error {
	if s.s.Conn().ConnState().StreamMultiplexer != yamux.ID {
		return s.s.Close()
	}
	err := s.s.CloseWrite()
	if rerr := s.s.Reset(); err == nil {
		err = rerr
	}
	return err
}

// Learn records the address of a member given as ADDR/p2p/ID, so that Open
// reaches it before gossip names it, and returns its peer ID.
func (m *Mesh) Learn(addr string) (meshnet.PeerID, error) {
	info, err := peer.AddrInfoFromString(addr)
	if err != nil {
		return "", fmt.Errorf("learn %q: %w", addr, err)
	}
	m.host.Peerstore().AddAddrs(info.ID, info.Addrs, time.Hour)
	return meshnet.PeerID(info.ID), nil
}

// setStreamHandler handles protocol p for admitted peers only: a stream from
// a peer that has not proved the cluster secret within a few seconds is
// reset before h sees it.
func (m *Mesh) setStreamHandler(p protocol.ID, h network.StreamHandler) {
	m.gated.SetStreamHandler(p, h)
}

// newStream opens a stream to peer p on the first of protos it supports,
// connecting first if needed: with the addresses in the peerstore, then the
// ones p gossiped, then the ones the DHT finds. It returns once p is
// admitted; ErrNotAdmitted means p does not belong to the cluster.
func (m *Mesh) newStream(ctx context.Context, p peer.ID, protos ...protocol.ID) (network.Stream, error) {
	if p == m.ID() {
		return nil, errors.New("new stream: to self")
	}
	if err := m.connect(ctx, p); err != nil {
		return nil, fmt.Errorf("%w: %w", meshnet.ErrUnreachable, err)
	}
	s, err := m.gated.NewStream(ctx, p, protos...)
	var unsupported msmux.ErrNotSupported[protocol.ID]
	switch {
	case err == nil:
		return s, nil
	case errors.Is(err, ErrNotAdmitted), errors.As(err, &unsupported), ctx.Err() != nil:
		return nil, err
	default:
		// The connection closed meanwhile, or the admission handshake
		// failed or timed out on it: p cannot be reached now, as when
		// connecting fails.
		return nil, fmt.Errorf("%w: %w", meshnet.ErrUnreachable, err)
	}
}

// connect makes sure there is a connection to p.
func (m *Mesh) connect(ctx context.Context, p peer.ID) error {
	if m.host.Network().Connectedness(p) == network.Connected {
		return nil
	}
	var errs []error
	if len(m.host.Peerstore().Addrs(p)) > 0 {
		err := m.host.Connect(ctx, peer.AddrInfo{ID: p})
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	if addrs := m.members.addrs(p); len(addrs) > 0 && ctx.Err() == nil {
		err := m.host.Connect(ctx, peer.AddrInfo{ID: p, Addrs: addrs})
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	if ctx.Err() == nil {
		info, err := m.findPeer(ctx, p)
		if err == nil {
			err = m.host.Connect(ctx, info)
		}
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	if err := ctx.Err(); err != nil && len(errs) == 0 {
		return err
	}
	return fmt.Errorf("connect %s: %w", p, errors.Join(errs...))
}

// findPeer looks up the addresses of peer id in the DHT.
func (m *Mesh) findPeer(ctx context.Context, id peer.ID) (peer.AddrInfo, error) {
	info, err := m.dht.FindPeer(ctx, id)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("find peer %s: %w", id, err)
	}
	return info, nil
}

// Provide announces in the DHT that this node holds the tree under root c.
// Announce roots only, never single blocks: the DHT is not built for
// millions of records per node.
func (m *Mesh) Provide(ctx context.Context, c cid.Cid) error {
	if err := m.dht.Provide(ctx, c, true); err != nil {
		return fmt.Errorf("provide %s: %w", c, err)
	}
	return nil
}

// findProviders returns up to max nodes (all it finds if max <= 0) that
// announced root c.
func (m *Mesh) findProviders(ctx context.Context, c cid.Cid, max int) ([]peer.AddrInfo, error) {
	count := max
	if count < 0 {
		count = 0 // the DHT's "all"
	}
	var out []peer.AddrInfo
	for info := range m.dht.FindProvidersAsync(ctx, c, count) {
		out = append(out, info)
	}
	if len(out) == 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// peerAdmitted puts a newly admitted peer into the DHT's routing table:
// every member serves the DHT, so members bootstrap each other.
func (m *Mesh) peerAdmitted(p peer.ID) {
	m.book.learn(p)
	if _, err := m.dht.RoutingTable().TryAddPeer(p, true, true); err != nil {
		m.log.Debug("peer not added to the DHT routing table", "peer", p, "err", err)
	}
}
