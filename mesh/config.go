package mesh

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"

	"github.com/hashicorp/memberlist"

	"github.com/weft-mesh/weft/mesh/meshnet"
)

// minSecretLen is the shortest cluster secret accepted; the secret keys the
// admission HMAC, so it must be hard to guess.
const minSecretLen = 16

// maxSiteLen bounds the site label so that it always fits in the 512 bytes of
// memberlist node metadata next to the capacity and at least one address.
const maxSiteLen = 64

// Config configures a Mesh. Key, Listen and Secret are required.
type Config struct {
	// Key is the node's identity; its public half is the peer ID.
	Key ed25519.PrivateKey
	// Listen holds the multiaddrs to listen on, TCP and/or QUIC
	// (/ip4/127.0.0.1/tcp/4001, /ip4/127.0.0.1/udp/4001/quic-v1); port 0 picks one.
	Listen []string
	// Secret is the cluster secret every member shares; peers that cannot
	// prove it are refused.
	Secret []byte
	// Site is the failure-domain label gossiped to the other members.
	Site string
	// Dir is where the mesh keeps the known peers for rejoin after a
	// restart; "" keeps nothing.
	Dir string
	// Logger receives the mesh's logs; nil discards them. The mesh tags
	// them component=mesh (memberlist's component=memberlist); naming the
	// node is the caller's, who tags the logger for every component alike.
	Logger *slog.Logger
	// State receives the application state carried by gossip; may be nil.
	State StateDelegate
	// Capacity reports the node's used and free bytes, gossiped in member
	// metadata and refreshed periodically; may be nil.
	Capacity func() (used, free int64)
	// Detector is the failure detector's timing, used when Gossip is nil.
	Detector Detector
	// Gossip overrides the whole memberlist configuration (tests); nil
	// uses Detector.Gossip(). The mesh copies it and sets the name,
	// transport and delegates itself.
	Gossip *memberlist.Config
}

// StateDelegate receives the application state that rides on memberlist:
// full-state push-pull and broadcasts.
type StateDelegate = meshnet.StateDelegate

// DefaultConfig returns a configuration listening on all IPv4 interfaces on
// port 4001 over TCP and QUIC. The caller still sets Key and Secret.
func DefaultConfig() Config {
	return Config{
		Listen:   []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"},
		Detector: DefaultDetector(),
	}
}

// Validate reports what is missing or wrong in c.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Key) != ed25519.PrivateKeySize {
		errs = append(errs, fmt.Errorf("key: got %d bytes, want an ed25519 private key of %d", len(c.Key), ed25519.PrivateKeySize))
	}
	if len(c.Listen) == 0 {
		errs = append(errs, errors.New("listen: no address"))
	}
	if len(c.Secret) < minSecretLen {
		errs = append(errs, fmt.Errorf("secret: got %d bytes, want at least %d", len(c.Secret), minSecretLen))
	}
	if len(c.Site) > maxSiteLen {
		errs = append(errs, fmt.Errorf("site: %d bytes, want at most %d", len(c.Site), maxSiteLen))
	}
	if c.Gossip == nil {
		if err := c.Detector.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("mesh config: %w", err)
	}
	return nil
}
