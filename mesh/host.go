package mesh

import (
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
)

const (
	// yamuxWindow is the largest receive window of one yamux stream. A
	// stream moves at most a window per round trip: 32 MiB keeps one bulk
	// stream above 300 MiB/s up to 100 ms of RTT. Windows grow only as a
	// stream is used, within the resource manager's memory limits.
	yamuxWindow = 32 << 20
	// connMemory and peerMemory bound what the yamux windows of one
	// connection, and of all connections to one peer, may reserve. The
	// libp2p defaults (32 MiB per connection) stall bulk transfers of a few
	// GB once a handful of streams have grown their windows.
	connMemory = 1 << 30
	peerMemory = 2 << 30
	// protocolPeerStreams lets the block exchange run many streams to one
	// peer in parallel.
	protocolPeerStreams = 1024
)

// newHost builds the libp2p host: TCP and QUIC, Noise or TLS (never
// insecure), yamux tuned for bulk transfer, and no relay, NAT or discovery
// services.
func newHost(cfg *Config) (host.Host, error) {
	key, err := crypto.UnmarshalEd25519PrivateKey(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(bulkTransferLimits()))
	if err != nil {
		return nil, fmt.Errorf("resource manager: %w", err)
	}
	h, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(cfg.Listen...),
		libp2p.Transport(newTCPTransport),
		libp2p.Transport(quic.NewTransport),
		// TLS 1.3 first: on CPUs with AES instructions it encrypts with
		// AES-GCM, several times cheaper per byte than Noise's
		// ChaCha20-Poly1305, which bounded bulk transfers. Noise stays for
		// peers that offer only it.
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, newMuxer()),
		libp2p.ResourceManager(rm),
		libp2p.DisableRelay(),
		// libp2p's metrics go to the global Prometheus registry, which
		// many nodes in one process would share.
		libp2p.DisableMetrics(),
	)
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("libp2p host on %v: %w", cfg.Listen, err)
	}
	return h, nil
}

// newMuxer is yamux tuned for bulk transfer, sending fairly across streams
// (fairsend.go).
func newMuxer() network.Multiplexer {
	mux := *yamux.DefaultTransport
	mux.MaxStreamWindowSize = yamuxWindow
	mux.MaxMessageSize = yamuxFrameSize
	return fairMuxer{&mux}
}

// bulkTransferLimits are libp2p's default limits scaled to this machine,
// with the memory of connections and peers raised for bulk transfer.
// Connection and stream counts keep their defaults.
func bulkTransferLimits() rcmgr.ConcreteLimitConfig {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	raised := rcmgr.PartialLimitConfig{
		PeerDefault: rcmgr.ResourceLimits{Memory: peerMemory},
		Conn:        rcmgr.ResourceLimits{Memory: connMemory},
		ProtocolPeerDefault: rcmgr.ResourceLimits{
			Streams:         protocolPeerStreams,
			StreamsInbound:  protocolPeerStreams,
			StreamsOutbound: protocolPeerStreams,
		},
	}
	return raised.Build(limits.AutoScale())
}
