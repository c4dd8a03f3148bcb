package mesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/weft-mesh/weft/internal/peerlimit"
)

const (
	gossipPacketProtocol protocol.ID = "/weft/gossip/packet/1.0.0"
	gossipStreamProtocol protocol.ID = "/weft/gossip/stream/1.0.0"

	// gossipPacketSize is memberlist's packet budget (UDPBufferSize). Streams
	// carry no MTU, so it is far above UDP's 1400 bytes: more broadcasts ride
	// on each gossip round.
	gossipPacketSize = 64 << 10
	// maxGossipPacket is the largest packet accepted from a peer: the budget
	// plus room for memberlist's label and compound headers.
	maxGossipPacket = gossipPacketSize + 4<<10
	// packetTimeout bounds sending or receiving one packet, dial included.
	packetTimeout = 5 * time.Second
	// maxGossipStreamsPerPeer bounds the gossip streams of one peer that
	// memberlist handles at once: each may make it hold a push-pull state
	// of up to 20 MB (memberlist's limit) for up to TCPTimeout. A peer's
	// gossip needs one or two at a time; a stream beyond is reset at once.
	maxGossipStreamsPerPeer = 8
	// maxPacketsInFlight bounds the packets being sent at once; beyond it
	// packets are dropped, as a full UDP socket buffer would.
	maxPacketsInFlight = 256
)

// gossipTransport carries memberlist over libp2p: each best-effort packet is
// one short stream (write, close), and memberlist's reliable channel is a
// stream presented as a net.Conn. One stream per packet keeps no per-peer
// state to invalidate and lets a slow peer delay only its own packets; a
// stream costs one frame of yamux or QUIC, not a handshake.
type gossipTransport struct {
	host *gatedHost
	book *gossipBook
	log  *slog.Logger

	ctx     context.Context
	cancel  context.CancelFunc
	packets chan *memberlist.Packet
	streams chan net.Conn
	sending chan struct{}    // one token per packet in flight
	handled *peerlimit.Turns // gossip streams being handled, per peer

	mu     sync.Mutex // orders wg.Add before Shutdown's wg.Wait
	closed bool
	wg     sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*gossipTransport)(nil)

func newGossipTransport(h *gatedHost, book *gossipBook, log *slog.Logger) *gossipTransport {
	ctx, cancel := context.WithCancel(context.Background())
	t := &gossipTransport{
		host:    h,
		book:    book,
		log:     log,
		ctx:     ctx,
		cancel:  cancel,
		packets: make(chan *memberlist.Packet),
		streams: make(chan net.Conn),
		sending: make(chan struct{}, maxPacketsInFlight),
		handled: &peerlimit.Turns{Limit: maxGossipStreamsPerPeer},
	}
	h.SetStreamHandler(gossipPacketProtocol, t.handlePacket)
	h.SetStreamHandler(gossipStreamProtocol, t.handleStream)
	return t
}

// FinalAdvertiseAddr advertises the node's synthetic gossip address,
// whatever memberlist was configured with.
func (t *gossipTransport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return gossipIP(t.host.ID()), gossipPort, nil
}

func (t *gossipTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress sends b in the background and returns at once, as a UDP
// send would: memberlist calls it from its probe and gossip loops, which a
// dial to a dead peer must not stall.
func (t *gossipTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if len(b) > maxGossipPacket {
		return time.Time{}, fmt.Errorf("gossip packet to %s: %d bytes, limit %d", a.String(), len(b), maxGossipPacket)
	}
	p, err := t.book.resolve(a)
	if err != nil {
		return time.Time{}, err
	}
	select {
	case t.sending <- struct{}{}:
	default:
		return time.Time{}, fmt.Errorf("gossip packet to %s: %d packets in flight, dropped", p, maxPacketsInFlight)
	}
	t.mu.Lock()
	if t.closed {
		// memberlist stops its loops only after its transport; what they
		// send in between is lost, as a packet to a closed socket would be.
		t.mu.Unlock()
		<-t.sending
		return time.Now(), nil
	}
	t.wg.Add(1)
	t.mu.Unlock()
	buf := append([]byte(nil), b...)
	go func() {
		defer t.wg.Done()
		defer func() { <-t.sending }()
		ctx, cancel := context.WithTimeout(t.ctx, packetTimeout)
		defer cancel()
		s, err := t.host.NewStream(ctx, p, gossipPacketProtocol)
		if err != nil {
			t.log.Debug("gossip packet not sent", "peer", p, "err", err)
			return
		}
		_ = s.SetDeadline(time.Now().Add(packetTimeout))
		if _, err := s.Write(buf); err != nil {
			s.Reset()
			t.log.Debug("gossip packet not sent", "peer", p, "err", err)
			return
		}
		s.Close()
	}()
	return time.Now(), nil
}

func (t *gossipTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

// handlePacket reads one packet: the whole stream, bounded in size and time.
func (t *gossipTransport) handlePacket(s network.Stream) {
	from := s.Conn().RemotePeer()
	t.book.learn(from)
	_ = s.SetReadDeadline(time.Now().Add(packetTimeout))
	buf, err := io.ReadAll(io.LimitReader(s, maxGossipPacket+1))
	if err != nil {
		s.Reset()
		t.log.Debug("gossip packet not received", "peer", from, "err", err)
		return
	}
	if len(buf) > maxGossipPacket {
		s.Reset()
		t.log.Warn("gossip packet too large, dropped", "peer", from, "limit", maxGossipPacket)
		return
	}
	s.Close()
	pkt := &memberlist.Packet{
		Buf:       buf,
		From:      net.UDPAddrFromAddrPort(gossipAddrPort(from)),
		Timestamp: time.Now(),
	}
	select {
	case t.packets <- pkt:
	case <-t.ctx.Done():
	}
}

func (t *gossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout opens memberlist's reliable channel to a node.
func (t *gossipTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	p, err := t.book.resolve(a)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(t.ctx, timeout)
	defer cancel()
	s, err := t.host.NewStream(ctx, p, gossipStreamProtocol)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("gossip stream to %s: timeout after %v", p, timeout)
		}
		return nil, fmt.Errorf("gossip stream to %s: %w", p, err)
	}
	return newStreamConn(s), nil
}

func (t *gossipTransport) StreamCh() <-chan net.Conn { return t.streams }

func (t *gossipTransport) handleStream(s network.Stream) {
	from := s.Conn().RemotePeer()
	release, ok := t.handled.TryTake(from.String())
	if !ok {
		t.log.Warn("gossip stream refused: too many from this peer at once", "peer", from, "limit", maxGossipStreamsPerPeer)
		s.Reset()
		return
	}
	t.book.learn(from)
	c := newStreamConn(s)
	c.closed = sync.OnceFunc(release) // memberlist closes every stream it handles
	select {
	case t.streams <- c:
	case <-t.ctx.Done():
		c.closed()
		s.Reset()
	}
}

// Shutdown stops the handlers and waits for packets being sent.
func (t *gossipTransport) Shutdown() error {
	t.host.RemoveStreamHandler(gossipPacketProtocol)
	t.host.RemoveStreamHandler(gossipStreamProtocol)
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.cancel()
	t.wg.Wait()
	return nil
}
