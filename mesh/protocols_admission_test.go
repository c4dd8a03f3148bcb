package mesh

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/cluster"
	"github.com/weft-mesh/weft/cluster/transfer"
	"github.com/weft-mesh/weft/internal/memstat"
	"github.com/weft-mesh/weft/mesh/exchange"
	"github.com/weft-mesh/weft/mesh/meshnet"
)

// A peer without the mesh secret, knowing a member's address, gets no
// stream on any protocol a node serves, and none of their handlers runs:
// blocks, catalog pushes and questions, transfers and crowd fetches, through Open and
// through a raw libp2p stream that skips the mesh's own dialling.
func TestWrongSecretIsRefusedOnEveryWeftProtocol(t *testing.T) {
	protos := []meshnet.Protocol{exchange.Protocol, cluster.CatalogProtocol, cluster.CatalogGetProtocol, transfer.Protocol, transfer.CrowdProtocol}
	a := newTestMesh(t, Config{Secret: newSecret(t), Site: "a"})
	var served atomic.Int64
	for _, p := range protos {
		a.Handle(p, func(_ context.Context, _ meshnet.PeerID, s io.ReadWriteCloser) {
			served.Add(1)
			_, _ = io.Copy(s, s)
		})
	}
	w := newTestMesh(t, Config{Secret: newSecret(t), Site: "w"})
	if _, err := w.Learn(a.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range protos {
		if s, err := w.Open(ctx, meshnet.PeerID(a.ID()), p); err == nil {
			s.Close()
			t.Errorf("open %s with the wrong secret: got a stream, want refused", p)
		} else if !errors.Is(err, ErrNotAdmitted) {
			t.Errorf("open %s with the wrong secret: got %v, want ErrNotAdmitted", p, err)
		}
		w.host.Peerstore().AddAddrs(a.ID(), a.host.Addrs(), time.Hour)
		if err := rawExchange(ctx, w, a.ID(), protocol.ID(p)); err == nil {
			t.Errorf("raw stream on %s with the wrong secret: got an answer, want reset", p)
		}
	}
	if n := served.Load(); n != 0 {
		t.Errorf("handlers ran %d times for the outsider, want 0", n)
	}
}

// An admitted member that opens more block-exchange streams at once than
// it may (400), each announcing a full frame, gets no more than its inbound stream
// limit (libp2p's resource manager), has at most exchange.MaxServedPerPeer
// of them read, and makes the node's heap grow by a bound those limits
// set. Another member is served meanwhile. The server's frame limit is
// scaled down to 1 MiB (a frame's buffer is then made whole on its
// header), so that the test holds a few hundred MiB at most, and a
// server that made a buffer per stream would exceed its bound by a
// margin, not by gigabytes.
func TestAdmittedPeerFloodingStreamsIsBounded(t *testing.T) {
	const (
		attempts   = 400
		frameLimit = 1 << 20
	)
	secret := newSecret(t)
	victim := newTestMesh(t, Config{Secret: secret, Site: "v"})
	store := blockstore.NewMemory()
	srv := &exchange.Server{Store: store, FrameLimit: frameLimit}
	var serving, most, read atomic.Int64
	victim.Handle(exchange.Protocol, func(ctx context.Context, from meshnet.PeerID, s io.ReadWriteCloser) {
		n := serving.Add(1)
		defer serving.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		srv.ServeStream(ctx, string(from), countingStream{s, &read})
	})
	evil := newTestMesh(t, Config{Secret: secret, Site: "e"})
	honest := newTestMesh(t, Config{Secret: secret, Site: "h"})
	join(t, evil, victim.Addrs())
	join(t, honest, victim.Addrs())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	to := meshnet.PeerID(victim.ID())

	before := memstat.LiveHeap()
	attack := binary.AppendUvarint(nil, frameLimit)
	var wg sync.WaitGroup
	var opened, refused atomic.Int64
	var mu sync.Mutex
	var streams []io.ReadWriteCloser
	stopped := false // under mu: streams opened from now on are aborted at once
	// attackOne opens a stream and sends it the attack, reporting whether
	// the whole of it went.
	attackOne := func() bool {
		// Beyond what the victim takes, an open waits (yamux holds
		// streams the other side has not acknowledged) or is reset.
		octx, ocancel := context.WithTimeout(ctx, 5*time.Second)
		defer ocancel()
		s, err := evil.Open(octx, to, exchange.Protocol)
		if err != nil {
			refused.Add(1)
			return false
		}
		mu.Lock()
		if stopped {
			mu.Unlock()
			meshnet.Abort(s)
			return false
		}
		streams = append(streams, s)
		mu.Unlock()
		opened.Add(1)
		if _, err := s.Write(attack); err != nil {
			refused.Add(1)
			return false
		}
		return true
	}
	// First the streams that get a turn, one after the other, then the
	// flood.
	for range exchange.MaxServedPerPeer {
		if !attackOne() {
			t.Fatal("an attacking stream with a turn free was refused")
		}
	}
	for range attempts - exchange.MaxServedPerPeer {
		wg.Add(1)
		go func() {
			defer wg.Done()
			attackOne()
		}()
	}
	defer func() {
		mu.Lock()
		stopped = true
		for _, s := range streams {
			meshnet.Abort(s)
		}
		mu.Unlock()
		wg.Wait()
	}()
	// The attack is in place once every attempt was opened or refused,
	// and the victim runs a handler for every stream it took (none ended)
	// and read every header they sent.
	for {
		time.Sleep(100 * time.Millisecond)
		if opened.Load()+refused.Load() >= attempts && serving.Load() == most.Load() && read.Load() >= opened.Load()*int64(len(attack)) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("attack not in place within 2 min: %d opened, %d refused, %d served (%d at most), %d bytes read", opened.Load(), refused.Load(), serving.Load(), most.Load(), read.Load())
		}
	}
	during := memstat.LiveHeap()

	limits := bulkTransferLimits().ToPartialLimitConfig()
	inbound := int64(min(limits.PeerDefault.StreamsInbound, limits.ProtocolPeerDefault.StreamsInbound))
	// Every stream the victim took holds the exchange's 128 KiB of stream
	// buffers and yamux's state of it on both sides (in this process too;
	// its receive window fills only with data, and the attack sends a
	// header); a served one, a frame buffer besides.
	const perStream = 128<<10 + 64<<10
	bound := uint64(inbound*perStream + exchange.MaxServedPerPeer*frameLimit + 64<<20)
	grew := int64(during) - int64(before)
	t.Logf("%d streams tried: %d opened, %d served at most at once (inbound limit %d), %d MiB read; heap %d MiB before, grew %d MiB (bound %d MiB)",
		attempts, opened.Load(), most.Load(), inbound, read.Load()>>20, before>>20, grew>>20, bound>>20)
	if m := most.Load(); m > inbound {
		t.Errorf("served %d streams of one peer at once, want at most its inbound limit %d", m, inbound)
	}
	if grew > int64(bound) {
		t.Errorf("heap grew by %d MiB under %d streams, want at most %d MiB", grew>>20, attempts, bound>>20)
	}

	client := &exchange.Client{Dialer: meshnet.Dialer{Net: honest, Proto: exchange.Protocol}}
	defer client.Close()
	b := blockstore.NewBlock(blockstore.CodecRaw, []byte("honest"))
	if err := client.Put(ctx, string(to), []blockstore.Block{b}); err != nil {
		t.Fatalf("honest put during the attack: %v", err)
	}
	if got, err := client.Get(ctx, string(to), []cid.Cid{b.CID}); err != nil || len(got) != 1 {
		t.Fatalf("honest get during the attack: got %d blocks (%v), want 1", len(got), err)
	}
}

// countingStream counts the bytes read from a stream; Reset still resets
// it (meshnet.Abort).
type countingStream struct {
	io.ReadWriteCloser
	n *atomic.Int64
}

func (s countingStream) Read(p []byte) (int, error) {
	n, err := s.ReadWriteCloser.Read(p)
	s.n.Add(int64(n))
	return n, err
}

func (s countingStream) Reset() error { return meshnet.Abort(s.ReadWriteCloser) }

// An admitted member opening many gossip streams at once has at most
// maxGossipStreamsPerPeer of them handled by memberlist (each may make it
// hold a 20 MB push-pull state); the others are reset at once, and
// gossip goes on.
func TestAdmittedPeerFloodingGossipStreamsIsBounded(t *testing.T) {
	const streams = 50
	secret := newSecret(t)
	// A long TCPTimeout: the streams memberlist takes stay open while the
	// test looks at the others.
	slow := testGossipConfig()
	slow.TCPTimeout = time.Minute
	victim := newTestMesh(t, Config{Secret: secret, Site: "v", Gossip: slow})
	evil := newTestMesh(t, Config{Secret: secret, Site: "e"})
	join(t, evil, victim.Addrs())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var reset atomic.Int64
	var wg sync.WaitGroup
	for range streams {
		s, err := evil.host.NewStream(ctx, victim.ID(), gossipStreamProtocol)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Reset()
		// The handler runs once the protocol is negotiated, which a
		// first byte does: a label header that says nothing yet.
		if _, err := s.Write([]byte{0}); err != nil {
			reset.Add(1)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.SetReadDeadline(time.Now().Add(3 * time.Second))
			var b [1]byte
			if _, err := s.Read(b[:]); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				reset.Add(1)
			}
		}()
	}
	wg.Wait()
	if got, want := reset.Load(), int64(streams-maxGossipStreamsPerPeer); got < want {
		t.Fatalf("gossip streams reset: got %d of %d, want at least %d (limit %d per peer)", got, streams, want, maxGossipStreamsPerPeer)
	}
	t.Logf("%d of %d gossip streams reset (limit %d per peer)", reset.Load(), streams, maxGossipStreamsPerPeer)
	if !hasState(victim, evil.ID(), StateAlive) {
		t.Fatal("the flooding member is no longer alive to the victim")
	}
}
