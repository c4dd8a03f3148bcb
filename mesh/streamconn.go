package mesh

import (
	"net"

	"github.com/libp2p/go-libp2p/core/network"
)

// streamConn presents a libp2p stream as the net.Conn memberlist expects on
// its reliable channel, with the synthetic gossip addresses of both ends.
type streamConn struct {
	network.Stream
	local, remote net.Addr
	closed        func() // if set, called by Close (once: it must be idempotent)
}

var _ net.Conn = (*streamConn)(nil)

func newStreamConn(s network.Stream) *streamConn {
	return &streamConn{
		Stream: s,
		local:  net.TCPAddrFromAddrPort(gossipAddrPort(s.Conn().LocalPeer())),
		remote: net.TCPAddrFromAddrPort(gossipAddrPort(s.Conn().RemotePeer())),
	}
}

func (c *streamConn) LocalAddr() net.Addr  { return c.local }
func (c *streamConn) RemoteAddr() net.Addr { return c.remote }

// Close closes the stream and calls c.closed.
func (c *streamConn) Close() error {
	if c.closed != nil {
		defer c.closed()
	}
	return c.Stream.Close()
}
