package exchange

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/memnet"
)

// hostileServer serves store on peer "b" of a memnet with short time
// bounds, and returns the server and the network.
func hostileServer(t *testing.T, store Store) (*Server, *memnet.Network) {
	t.Helper()
	n := memnet.New()
	t.Cleanup(n.Close)
	srv := &Server{Store: store, idleBound: 200 * time.Millisecond, readBound: 200 * time.Millisecond}
	n.Listen("b", srv.ServeStream)
	return srv, n
}

// waitReset reads s until it fails, within a deadline: the server reset
// or closed it.
func waitReset(t *testing.T, s io.Reader, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, s)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: stream still open after 10 s, want it reset", what)
	}
}

// An admitted peer that opens a stream and sends nothing, or sends a
// request a byte at a time, gets its stream reset once the idle or read
// bound passed, and the server is free of it.
func TestServerResetsIdleAndSlowStreams(t *testing.T) {
	srv, n := hostileServer(t, blockstore.NewMemory())
	ctx := context.Background()

	idle, err := n.Dialer("a").OpenStream(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	waitReset(t, idle, "idle stream")

	slow, err := n.Dialer("a").OpenStream(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	req := frame(encodedRequest(t, request{op: opHas, cids: []cid.Cid{blockstore.Sum(blockstore.CodecRaw, []byte("x"))}}))
	trickled := make(chan error, 1)
	go func() {
		for _, b := range req {
			if _, err := slow.Write([]byte{b}); err != nil {
				trickled <- err
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		trickled <- nil
	}()
	waitReset(t, slow, "slow sender")
	if err := <-trickled; err == nil {
		t.Fatal("the slow sender wrote its whole request: want its stream reset midway")
	}
	if callers, held := srv.turns.Load("a"); callers != 0 || held != 0 {
		t.Fatalf("after the streams were reset: %d streams waiting or served, %d served, want none", callers, held)
	}
}

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// An admitted peer that opens many streams, each announcing a full frame
// and sending the first megabyte of it, makes the server hold at most
// MaxServedPerPeer frame buffers, not one per stream; the server goes on
// serving another peer meanwhile, and frees everything once the streams
// are reset.
func TestServerMemoryBoundedUnderManyStreams(t *testing.T) {
	const streams = 100
	store := blockstore.NewMemory()
	n := memnet.New()
	t.Cleanup(n.Close)
	// Long bounds: the attack holds until the test ends it.
	srv := &Server{Store: store, idleBound: time.Minute, readBound: time.Minute}
	n.Listen("b", srv.ServeStream)
	ctx := context.Background()

	before := heapInUse()
	attack := append(binary.AppendUvarint(nil, MaxFrameSize), bytes.Repeat([]byte{0xa5}, initialFrameBuffer+1)...)
	var wg sync.WaitGroup
	var open []io.ReadWriteCloser
	for range streams {
		s, err := n.Dialer("evil").OpenStream(ctx, "b")
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = s.Write(attack) // blocks on the pipe once the server stops reading
		}()
	}
	defer func() {
		for _, s := range open {
			s.Close()
		}
		wg.Wait()
	}()
	// Every attacking stream has sent its header: MaxServedPerPeer read
	// their frames, the others wait for a turn.
	deadline := time.Now().Add(30 * time.Second)
	for {
		users, held := srv.turns.Load("evil")
		if users == streams && held == min(streams, MaxServedPerPeer) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("attack not in place after 30 s: %d streams waiting or served, %d served, want %d and %d", users, held, streams, min(streams, MaxServedPerPeer))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Let the served streams' buffers grow to the full frame.
	time.Sleep(200 * time.Millisecond)
	during := heapInUse()
	// Each turn holds at most a frame buffer; each stream, the turn's or
	// not, what its memnet pipe buffers (the transport's window, as
	// yamux's in the daemon: 1 MiB, in a bytes.Buffer of up to twice
	// that) and its 128 KiB of stream buffers.
	const perStream = 2<<20 + 128<<10
	bound := uint64(MaxServedPerPeer*MaxFrameSize + streams*perStream + 32<<20)
	grew := int64(during) - int64(before)
	t.Logf("heap: %d MiB before, %d MiB during the attack of %d streams (bound on the growth %d MiB)", before>>20, during>>20, streams, bound>>20)
	if grew > int64(bound) {
		t.Fatalf("heap grew by %d MiB under %d streams, want at most %d MiB", grew>>20, streams, bound>>20)
	}

	// Another peer is served meanwhile.
	honest := &Client{Dialer: n.Dialer("honest")}
	defer honest.Close()
	b := blockstore.NewBlock(blockstore.CodecRaw, []byte("honest block"))
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := honest.Put(cctx, "b", []blockstore.Block{b}); err != nil {
		t.Fatalf("honest put during the attack: %v", err)
	}
	if ok, err := store.Has(ctx, b.CID); err != nil || !ok {
		t.Fatalf("honest block stored: got %v (%v), want true", ok, err)
	}
	if got, err := honest.Get(cctx, "b", []cid.Cid{b.CID}); err != nil || len(got) != 1 {
		t.Fatalf("honest get during the attack: got %d blocks (%v), want 1", len(got), err)
	}
}
