package mesh

import (
	"context"
	"fmt"
	"syscall"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/transport"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/libp2p/go-libp2p/p2p/transport/tcpreuse"
	manet "github.com/multiformats/go-multiaddr/net"
	"golang.org/x/sys/unix"
)

// Over TCP every stream to a peer, gossip included, shares one connection:
// a gossip message is sent only after every byte queued ahead of it, on a
// capped link seconds of block data unless the queues are kept short. Two
// queues hold it: yamux's send queue (FIFO across streams; fairsend.go
// keeps it short and lets streams take turns) and the socket's unsent
// bytes. QUIC schedules streams side by side and needs neither bound.
const (
	// yamuxFrameSize bounds a yamux frame, header included: the unit in
	// which streams take turns. 16 KiB is TLS's largest record: each frame
	// is one record and one write, as a 64 KiB frame cut into four records
	// was, so bulk transfer pays no extra system calls. 4 KiB frames cut
	// the loopback pull of bench-wire.sh by 40%.
	yamuxFrameSize = 16 << 10
	// tcpNotSentLowat bounds the bytes a TCP socket accepts beyond what is
	// in flight (TCP_NOTSENT_LOWAT); without it the kernel buffers up to
	// tcp_wmem's maximum (4 MiB by default) ahead of every later write. The
	// data in flight, and so throughput, is not limited by it: 32 KiB, two
	// TLS records, as sendBacklogBound keeps yamux's queue short too.
	tcpNotSentLowat = 32 << 10
)

// newTCPTransport is libp2p's TCP transport whose every connection, dialled
// or accepted, bounds its socket's unsent bytes.
func newTCPTransport(u transport.Upgrader, rcmgr network.ResourceManager, shared *tcpreuse.ConnMgr) (*tcp.TcpTransport, error) {
	return tcp.NewTCPTransport(lowatUpgrader{u}, rcmgr, shared)
}

// lowatUpgrader sets TCP_NOTSENT_LOWAT on each raw connection before
// libp2p secures and multiplexes it.
type lowatUpgrader struct{ transport.Upgrader }

var _ transport.Upgrader = lowatUpgrader{}

// GateMaListener gates the accepted connections of l, which bound their
// unsent bytes first.
func (u lowatUpgrader) GateMaListener(l manet.Listener) transport.GatedMaListener {
	return u.Upgrader.GateMaListener(lowatListener{l})
}

// UpgradeListener is GateMaListener then upgrade, as libp2p's own.
func (u lowatUpgrader) UpgradeListener(t transport.Transport, l manet.Listener) transport.Listener {
	return u.UpgradeGatedMaListener(t, u.GateMaListener(l))
}

// Upgrade is called for dialled connections; accepted ones went through
// the listener.
func (u lowatUpgrader) Upgrade(ctx context.Context, t transport.Transport, c manet.Conn, dir network.Direction, p peer.ID, scope network.ConnManagementScope) (transport.CapableConn, error) {
	if err := boundUnsent(c); err != nil {
		c.Close()
		return nil, err
	}
	return u.Upgrader.Upgrade(ctx, t, c, dir, p, scope)
}

type lowatListener struct{ manet.Listener }

func (l lowatListener) Accept() (manet.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if err := boundUnsent(c); err != nil {
			// One connection that cannot be tuned (gone already) is
			// dropped; the listener goes on.
			c.Close()
			continue
		}
		return c, nil
	}
}

// boundUnsent sets TCP_NOTSENT_LOWAT on c's socket. A connection that is not
// a socket (none in libp2p's TCP transport) is left as it is.
func boundUnsent(c manet.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("tcp connection %s: %w", c.RemoteMultiaddr(), err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, tcpNotSentLowat)
	}); err != nil {
		return fmt.Errorf("tcp connection %s: %w", c.RemoteMultiaddr(), err)
	}
	if serr != nil {
		return fmt.Errorf("tcp connection %s: TCP_NOTSENT_LOWAT: %w", c.RemoteMultiaddr(), serr)
	}
	return nil
}
