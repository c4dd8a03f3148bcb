package mesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/multiformats/go-multiaddr"
	"github.com/multiformats/go-multihash"
)

func TestThreeNodesGossipStateAndStreams(t *testing.T) {
	secret := newSecret(t)
	states := map[string]*testState{"a": newTestState(), "b": newTestState(), "c": newTestState()}
	nodes := map[string]*Mesh{}
	for _, site := range []string{"a", "b", "c"} {
		nodes[site] = newTestMesh(t, Config{
			Secret:   secret,
			Site:     site,
			State:    states[site],
			Capacity: func() (int64, int64) { return int64(len(site)) * 10, 1000 },
		})
		nodes[site].setStreamHandler(echoProtocol, echo)
	}
	a, b, c := nodes["a"], nodes["b"], nodes["c"]
	join(t, c, a.Addrs())
	join(t, b, c.Addrs())

	for site, m := range nodes {
		eventually(t, 10*time.Second, site+" sees three alive members", func() bool {
			ms := m.Members()
			if len(ms) != 3 {
				return false
			}
			for _, mem := range ms {
				if mem.State != StateAlive {
					return false
				}
			}
			return true
		})
	}
	for site, m := range nodes {
		for wantSite, other := range nodes {
			mem, _ := member(m, other.ID())
			if mem.Site != wantSite || mem.Self != (m == other) || mem.Used != 10 || mem.Free != 1000 {
				t.Errorf("%s's view of %s: got site %q self %v used %d free %d; want %q %v 10 1000",
					site, wantSite, mem.Site, mem.Self, mem.Used, mem.Free, wantSite, m == other)
			}
			for _, want := range other.host.Addrs() {
				if !slices.Contains(mem.Addrs, want.String()) {
					t.Errorf("%s's view of %s: addrs %v lack %v", site, wantSite, mem.Addrs, want)
				}
			}
		}
	}

	a.Broadcast([]byte("broadcast-from-a"))
	states["b"].add("pushpull-from-b") // local only: travels by push-pull
	for site, s := range states {
		eventually(t, 10*time.Second, site+" got a's broadcast", func() bool { return s.has("broadcast-from-a") })
		eventually(t, 10*time.Second, site+" got b's state by push-pull", func() bool { return s.has("pushpull-from-b") })
	}

	if got := roundTrip(t, a, b.ID(), "a to b"); got != "a to b" {
		t.Errorf("echo a->b: got %q, want %q", got, "a to b")
	}
	if got := roundTrip(t, b, a.ID(), "b to a"); got != "b to a" {
		t.Errorf("echo b->a: got %q, want %q", got, "b to a")
	}

	mh, err := multihash.Sum([]byte("a root"), multihash.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	root := cid.NewCidV1(cid.Raw, mh)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := a.Provide(ctx, root); err != nil {
		t.Fatalf("provide: %v", err)
	}
	provs, err := c.findProviders(ctx, root, 1)
	if err != nil || len(provs) != 1 || provs[0].ID != a.ID() {
		t.Errorf("find providers of a's root from c: got %v, %v; want [%s]", provs, err, a.ID())
	}
}

func TestLeaveAndDeath(t *testing.T) {
	secret := newSecret(t)
	a := newTestMesh(t, Config{Secret: secret, Site: "a"})
	b := newTestMesh(t, Config{Secret: secret, Site: "b"})
	c := newTestMesh(t, Config{Secret: secret, Site: "c"})
	join(t, b, a.Addrs())
	join(t, c, a.Addrs())
	eventually(t, 10*time.Second, "a sees b and c alive", func() bool {
		return hasState(a, b.ID(), StateAlive) && hasState(a, c.ID(), StateAlive)
	})
	var changes atomic.Int64
	a.OnMembershipChange(func() { changes.Add(1) })

	if err := c.Close(); err != nil {
		t.Fatalf("close c: %v", err)
	}
	eventually(t, 10*time.Second, "a sees c left", func() bool { return hasState(a, c.ID(), StateLeft) })
	eventually(t, 5*time.Second, "membership change callback after c left", func() bool { return changes.Load() > 0 })

	// Kill b: its network goes away without a leave message.
	before := changes.Load()
	if err := b.host.Close(); err != nil {
		t.Fatalf("kill b: %v", err)
	}
	eventually(t, 15*time.Second, "a sees b dead", func() bool { return hasState(a, b.ID(), StateDead) })
	eventually(t, 5*time.Second, "membership change callback after b died", func() bool { return changes.Load() > before })
}

func TestWrongSecretIsRefused(t *testing.T) {
	secret := newSecret(t)
	var served atomic.Int64
	counting := func(s network.Stream) { served.Add(1); echo(s) }
	a := newTestMesh(t, Config{Secret: secret, Site: "a"})
	b := newTestMesh(t, Config{Secret: secret, Site: "b"})
	a.setStreamHandler(echoProtocol, counting)
	b.setStreamHandler(echoProtocol, counting)
	join(t, b, a.Addrs())

	w := newTestMesh(t, Config{Secret: newSecret(t), Site: "w"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if n, err := w.Join(ctx, a.Addrs()); err == nil {
		t.Fatalf("join with the wrong secret: got %d, nil; want an error", n)
	} else if want := a.ID().String() + ": wrong cluster secret"; !errors.Is(err, ErrNotAdmitted) || err.Error() != want {
		t.Errorf("join with the wrong secret: got %q, want %q (ErrNotAdmitted, the peer named once)", err, want)
	}

	protos := []protocol.ID{echoProtocol, gossipPacketProtocol, gossipStreamProtocol, "/weft/kad/1.0.0"}
	for _, target := range []*Mesh{a, b} {
		w.host.Peerstore().AddAddrs(target.ID(), target.host.Addrs(), time.Hour)
		for _, p := range protos {
			if err := rawExchange(ctx, w, target.ID(), p); err == nil {
				t.Errorf("raw stream on %s to %s with the wrong secret: got an answer, want reset", p, target.ID())
			}
		}
	}
	if _, err := w.newStream(ctx, a.ID(), echoProtocol); err == nil {
		t.Error("NewStream with the wrong secret: got nil error")
	}
	if n := served.Load(); n != 0 {
		t.Errorf("echo handler ran %d times for the outsider, want 0", n)
	}
	for _, m := range []*Mesh{a, b} {
		if _, ok := member(m, w.ID()); ok {
			t.Errorf("%s lists the outsider as a member", m.ID())
		}
	}
	if ms := w.Members(); len(ms) != 1 {
		t.Errorf("outsider knows %d members, want only itself", len(ms))
	}
}

// rawExchange opens a stream on the raw host, bypassing admission, writes
// and reads to the end; a nil error means the remote served the stream.
func rawExchange(ctx context.Context, from *Mesh, to peer.ID, p protocol.ID) error {
	s, err := from.host.NewStream(ctx, to, p)
	if err != nil {
		return err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(admitTimeout + 5*time.Second))
	if _, err := s.Write([]byte("hello")); err != nil {
		return err
	}
	if err := s.CloseWrite(); err != nil {
		return err
	}
	_, err = io.ReadAll(s)
	return err
}

func TestQUICOnlyJoin(t *testing.T) {
	secret := newSecret(t)
	a := newTestMesh(t, Config{Secret: secret, Site: "a"})
	q := newTestMesh(t, Config{Secret: secret, Site: "q", Listen: []string{"/ip4/127.0.0.1/udp/0/quic-v1"}})
	q.setStreamHandler(echoProtocol, echo)
	a.setStreamHandler(echoProtocol, echo)

	var quicAddrs []string
	for _, s := range a.Addrs() {
		if strings.Contains(s, "/quic-v1/") {
			quicAddrs = append(quicAddrs, s)
		}
	}
	if len(quicAddrs) == 0 {
		t.Fatalf("a has no QUIC address in %v", a.Addrs())
	}
	join(t, q, quicAddrs)
	eventually(t, 10*time.Second, "a and q see each other alive", func() bool {
		return hasState(a, q.ID(), StateAlive) && hasState(q, a.ID(), StateAlive)
	})
	mem, _ := member(a, q.ID())
	if len(mem.Addrs) == 0 {
		t.Fatal("a knows no address of q")
	}
	for _, ad := range mem.Addrs {
		if _, err := multiaddr.StringCast(ad).ValueForProtocol(multiaddr.P_QUIC_V1); err != nil {
			t.Errorf("q gossiped %v, want QUIC addresses only", ad)
		}
	}
	if got := roundTrip(t, a, q.ID(), "to q"); got != "to q" {
		t.Errorf("echo a->q: got %q, want %q", got, "to q")
	}
	if got := roundTrip(t, q, a.ID(), "to a"); got != "to a" {
		t.Errorf("echo q->a: got %q, want %q", got, "to a")
	}
}

func TestNewStreamFindsPeerThroughDHT(t *testing.T) {
	secret := newSecret(t)
	a := newTestMesh(t, Config{Secret: secret, Site: "a"})
	b := newTestMesh(t, Config{Secret: secret, Site: "b"})
	b.setStreamHandler(echoProtocol, echo)
	join(t, b, a.Addrs())
	eventually(t, 10*time.Second, "a has b in its DHT routing table", func() bool {
		return a.dht.RoutingTable().Find(b.ID()) != ""
	})

	// d is admitted by a but is no gossip member: it knows b by ID only.
	d := newTestMesh(t, Config{Secret: secret, Site: "d"})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := d.host.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: a.host.Addrs()}); err != nil {
		t.Fatalf("d connect a: %v", err)
	}
	if err := d.admission.wait(ctx, a.ID()); err != nil {
		t.Fatalf("d admitted by a: %v", err)
	}
	if addrs := d.host.Peerstore().Addrs(b.ID()); len(addrs) != 0 {
		t.Fatalf("d already knows addresses of b: %v", addrs)
	}
	if got := roundTrip(t, d, b.ID(), "via dht"); got != "via dht" {
		t.Errorf("echo d->b: got %q, want %q", got, "via dht")
	}
}

func TestRestartedNodeRejoins(t *testing.T) {
	secret := newSecret(t)
	dir := t.TempDir()
	a := newTestMesh(t, Config{Secret: secret, Site: "a"})
	cfg := Config{Secret: secret, Site: "b", Dir: dir}
	b := newTestMesh(t, cfg)
	cfg.Key = b.cfg.Key
	join(t, b, a.Addrs())
	peersFile := filepath.Join(dir, peerFileName)
	eventually(t, 10*time.Second, "b saved a's address", func() bool {
		data, err := os.ReadFile(peersFile)
		return err == nil && strings.Contains(string(data), a.ID().String())
	})
	if err := b.Close(); err != nil {
		t.Fatalf("close b: %v", err)
	}
	eventually(t, 10*time.Second, "a sees b left", func() bool { return hasState(a, b.ID(), StateLeft) })

	b2 := newTestMesh(t, cfg)
	if b2.ID() != b.ID() {
		t.Fatalf("restarted b has ID %s, want %s", b2.ID(), b.ID())
	}
	eventually(t, 15*time.Second, "restarted b and a see each other alive", func() bool {
		return hasState(a, b2.ID(), StateAlive) && hasState(b2, a.ID(), StateAlive)
	})
}

// TestRejoinReachesEveryKnownPeer: a node restarted while one of its known
// peers is out of reach joins the others, and joins that one too when it
// comes back, rather than staying in the part of the mesh it found first
// (make torture saw two nodes of a site restarted together stay an island
// of two for 40 s).
func TestRejoinReachesEveryKnownPeer(t *testing.T) {
	secret := newSecret(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	aCfg := Config{Secret: secret, Site: "a", Listen: []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)}}
	a := newTestMesh(t, aCfg)
	aCfg.Key = a.cfg.Key
	aAddrs := a.Addrs()
	if err := a.Close(); err != nil {
		t.Fatalf("close a: %v", err)
	}
	c := newTestMesh(t, Config{Secret: secret, Site: "c"})

	dir := t.TempDir()
	if err := SeedPeers(dir, append(aAddrs, c.Addrs()...)); err != nil {
		t.Fatal(err)
	}
	b := newTestMesh(t, Config{Secret: secret, Site: "b", Dir: dir})
	eventually(t, 15*time.Second, "b joins c, a being down", func() bool { return hasState(b, c.ID(), StateAlive) })

	a2 := newTestMesh(t, aCfg)
	eventually(t, 15*time.Second, "b joins a once it is back", func() bool {
		return hasState(b, a2.ID(), StateAlive) && hasState(a2, b.ID(), StateAlive)
	})
}

// TestJoinDialsPastTheBackoff: failed dials during a cut leave each
// side's addresses of the other in libp2p's dial backoff, which grows with
// every retry to minutes (8 retries over a 2.5-minute cut: 69 s more).
// Once the cut heals, a join (the rejoin loop's, or an operator's) dials
// at once rather than fail with "dial backoff" until it runs out.
func TestJoinDialsPastTheBackoff(t *testing.T) {
	secret := newSecret(t)
	a := newTestMesh(t, Config{Secret: secret, Site: "a"})
	b := newTestMesh(t, Config{Secret: secret, Site: "b"})
	for _, pair := range [][2]*Mesh{{a, b}, {b, a}} {
		from, to := pair[0], pair[1]
		backoff := from.host.Network().(*swarm.Swarm).Backoff()
		for _, addr := range to.host.Addrs() {
			for range 9 {
				backoff.AddBackoff(to.ID(), addr)
			}
		}
	}
	if n, err := a.Join(context.Background(), b.Addrs()); err != nil || n != 1 {
		t.Fatalf("join a to b past the backoff: %d answered, %v", n, err)
	}
	eventually(t, 10*time.Second, "a and b see each other alive", func() bool {
		return hasState(a, b.ID(), StateAlive) && hasState(b, a.ID(), StateAlive)
	})
}
