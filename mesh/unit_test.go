package mesh

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/test"
	"github.com/multiformats/go-multiaddr"
)

func TestMetaTrimsAddressesToFit(t *testing.T) {
	var addrs [][]byte
	for i := range 100 {
		addrs = append(addrs, multiaddr.StringCast(fmt.Sprintf("/ip6/2001:db8::%x/udp/4001/quic-v1", i+1)).Bytes())
	}
	site := string(bytes.Repeat([]byte("s"), maxSiteLen))
	in := nodeMeta{Site: site, Addrs: addrs, Used: 1 << 40, Free: 1 << 41}
	b := in.encode(memberlist.MetaMaxSize)
	if len(b) == 0 || len(b) > memberlist.MetaMaxSize {
		t.Fatalf("encoded metadata: got %d bytes, want 1..%d", len(b), memberlist.MetaMaxSize)
	}
	got, gotAddrs, err := decodeMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Site != site || got.Used != in.Used || got.Free != in.Free {
		t.Errorf("decoded %+v, want site, used and free of %+v", got, in)
	}
	if len(gotAddrs) == 0 || !gotAddrs[0].Equal(multiaddr.StringCast("/ip6/2001:db8::1/udp/4001/quic-v1")) {
		t.Errorf("decoded addresses %v, want the first ones kept", gotAddrs)
	}
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(nodeMeta{Site: "a", Addrs: [][]byte{multiaddr.StringCast("/ip4/127.0.0.1/tcp/1").Bytes()}, Used: 1, Free: 2}.encode(memberlist.MetaMaxSize))
	f.Add([]byte{0xa1, 0x02, 0x81, 0x41, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = decodeMeta(b)
	})
}

func TestGossipBookResolve(t *testing.T) {
	p, q := test.RandPeerIDFatal(t), test.RandPeerIDFatal(t)
	book := newGossipBook()
	if _, err := book.resolve(memberlist.Address{Addr: gossipAddrPort(p).String()}); err == nil {
		t.Error("resolve an unknown address: got nil error")
	}
	got, err := book.resolve(memberlist.Address{Addr: gossipAddrPort(p).String(), Name: p.String()})
	if err != nil || got != p {
		t.Errorf("resolve by name: got %s, %v; want %s", got, err, p)
	}
	if got, err := book.resolve(memberlist.Address{Addr: gossipAddrPort(p).String()}); err != nil || got != p {
		t.Errorf("resolve a learned address: got %s, %v; want %s", got, err, p)
	}
	if _, err := book.resolve(memberlist.Address{Addr: gossipAddrPort(p).String(), Name: q.String()}); err == nil {
		t.Error("resolve a name with another peer's address: got nil error")
	}
}

func TestAdmissionProofIsBoundToPeersAndRole(t *testing.T) {
	a := &admission{secret: []byte("0123456789abcdef0123456789abcdef")}
	p, q, r := test.RandPeerIDFatal(t), test.RandPeerIDFatal(t), test.RandPeerIDFatal(t)
	base := a.proof(p, q, roleInitiator)
	for name, other := range map[string][]byte{
		"responder role":  a.proof(p, q, roleResponder),
		"other responder": a.proof(p, r, roleInitiator),
		"swapped peers":   a.proof(q, p, roleInitiator),
		"other secret":    (&admission{secret: []byte("another secret, 32 bytes long!!")}).proof(p, q, roleInitiator),
	} {
		if bytes.Equal(base, other) {
			t.Errorf("proof equals the one with %s", name)
		}
	}
}

// BenchmarkGossipPing measures one memberlist ping and ack: two gossip
// packets, each its own libp2p stream.
func BenchmarkGossipPing(b *testing.B) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	x := newTestMesh(b, Config{Secret: secret})
	y := newTestMesh(b, Config{Secret: secret})
	if _, err := x.Join(b.Context(), y.Addrs()); err != nil {
		b.Fatal(err)
	}
	to := gossipAddrPort(y.ID())
	for b.Loop() {
		if _, err := x.ml.Ping(y.ID().String(), net.UDPAddrFromAddrPort(to)); err != nil {
			b.Fatal(err)
		}
	}
}

func TestMemberTableKeepsDeadUntilForgotten(t *testing.T) {
	dead, left, alive := test.RandPeerIDFatal(t), test.RandPeerIDFatal(t), test.RandPeerIDFatal(t)
	tab := newMemberTable(30 * time.Second)
	tab.update(dead, nodeMeta{Site: "a"}, nil)
	tab.update(left, nodeMeta{Site: "b", Leaving: true}, nil)
	tab.update(alive, nodeMeta{Site: "c"}, nil)
	t0 := time.Unix(1000, 0)
	tab.remove(dead, t0)
	tab.remove(left, t0)

	states := func(now time.Time) map[peer.ID]State {
		got := map[peer.ID]State{}
		for _, m := range tab.list(now) {
			got[peer.ID(m.ID)] = m.State
		}
		return got
	}
	later := states(t0.Add(time.Hour))
	if later[dead] != StateDead {
		t.Errorf("an hour after it died: got state %q, want %q", later[dead], StateDead)
	}
	if _, ok := later[left]; ok {
		t.Errorf("an hour after it left: still listed, want forgotten with memberlist")
	}
	if err := tab.forget(alive); !errors.Is(err, ErrMemberAlive) {
		t.Errorf("forget a live member: got %v, want ErrMemberAlive", err)
	}
	if err := tab.forget(test.RandPeerIDFatal(t)); !errors.Is(err, ErrUnknownMember) {
		t.Errorf("forget a stranger: got %v, want ErrUnknownMember", err)
	}
	if err := tab.forget(dead); err != nil {
		t.Fatalf("forget a dead member: %v", err)
	}
	if _, ok := states(t0)[dead]; ok {
		t.Error("forgotten member still listed")
	}
	tab.update(dead, nodeMeta{Site: "a"}, nil)
	if got := states(t0)[dead]; got != StateAlive {
		t.Errorf("forgotten member that came back: got state %q, want %q", got, StateAlive)
	}
}

func TestBoundListenRecordsPickedPorts(t *testing.T) {
	bound := []multiaddr.Multiaddr{
		multiaddr.StringCast("/ip4/127.0.0.2/tcp/41234"),
		multiaddr.StringCast("/ip4/127.0.0.2/udp/41999/quic-v1"),
		multiaddr.StringCast("/ip4/127.0.0.2/tcp/4001"),
	}
	got, err := boundListen([]string{"/ip4/127.0.0.2/udp/0/quic-v1", "/ip4/127.0.0.2/tcp/4001", "/ip4/127.0.0.2/tcp/0"}, bound[:2])
	if err == nil {
		t.Errorf("a configured port not bound: got %v, want an error", got)
	}
	got, err = boundListen([]string{"/ip4/127.0.0.2/udp/0/quic-v1", "/ip4/127.0.0.2/tcp/4001"}, bound)
	want := []string{"/ip4/127.0.0.2/udp/41999/quic-v1", "/ip4/127.0.0.2/tcp/4001"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("got %v, %v; want %v", got, err, want)
	}
}
