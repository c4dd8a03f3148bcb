package mesh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// testGossipConfig returns memberlist timings for tests on one machine: a
// failed node is declared dead within a few seconds, and push-pull runs
// every second.
func testGossipConfig() *memberlist.Config {
	c := memberlist.DefaultLANConfig()
	c.ProbeInterval = 300 * time.Millisecond
	c.ProbeTimeout = 200 * time.Millisecond
	c.GossipInterval = 50 * time.Millisecond
	c.PushPullInterval = time.Second
	c.TCPTimeout = 3 * time.Second
	c.SuspicionMult = 3
	c.SuspicionMaxTimeoutMult = 2
	c.GossipToTheDeadTime = 20 * time.Second
	return c
}

// newTestMesh starts a mesh for a test and closes it at the end of the
// test. Zero fields of cfg get test values: a fresh key, TCP and QUIC
// listeners on 127.0.0.1 with port 0, testGossipConfig, and logs on stderr
// when the test runs verbose. cfg.Secret must be set.
func newTestMesh(t testing.TB, cfg Config) *Mesh {
	t.Helper()
	if cfg.Key == nil {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Key = key
	}
	if cfg.Listen == nil {
		cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	}
	if cfg.Gossip == nil {
		cfg.Gossip = testGossipConfig()
	}
	if cfg.Logger == nil && testing.Verbose() {
		key, err := crypto.UnmarshalEd25519PrivateKey(cfg.Key)
		if err != nil {
			t.Fatal(err)
		}
		id, err := peer.IDFromPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("new mesh: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close mesh %s: %v", m.ID(), err)
		}
	})
	return m
}
