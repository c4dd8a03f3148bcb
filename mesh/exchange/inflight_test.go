package exchange

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/memnet"
)

// waitFor polls cond within 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 10 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waiting reports the calls of f waiting for a round trip to peer.
func (f *inFlight) waiting(peer string) (foreground, bulk int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if pt := f.peers[peer]; pt != nil {
		return len(pt.waiting[0]), len(pt.waiting[1])
	}
	return 0, 0
}

// With every round trip to a peer taken, a foreground call that arrives
// after a bulk one gets the next free one first; a waiting call whose
// context ends leaves the queue.
func TestInFlightForegroundFirst(t *testing.T) {
	f := &inFlight{limit: 1}
	ctx := context.Background()
	give, err := f.take(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	order := make(chan string, 2)
	var wg sync.WaitGroup
	start := func(ctx context.Context, name string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			done, err := f.take(ctx, "p")
			if err != nil {
				order <- name + ": " + err.Error()
				return
			}
			order <- name
			done()
		}()
	}
	cctx, cancel := context.WithCancel(ctx)
	start(cctx, "gone")
	waitFor(t, "the cancelled call waits", func() bool { _, b := f.waiting("p"); return b == 1 })
	start(ctx, "bulk")
	waitFor(t, "the bulk call waits", func() bool { _, b := f.waiting("p"); return b == 2 })
	cancel()
	if got := <-order; got != "gone: "+context.Canceled.Error() {
		t.Fatalf("the cancelled call: %q, want it to give up", got)
	}
	start(Foreground(ctx), "foreground")
	waitFor(t, "the foreground call waits", func() bool { fg, _ := f.waiting("p"); return fg == 1 })
	give()
	wg.Wait()
	if first, second := <-order, <-order; first != "foreground" || second != "bulk" {
		t.Fatalf("order: %s then %s, want foreground then bulk", first, second)
	}
	if len(f.peers) != 0 {
		t.Fatalf("peers kept with nothing in flight: %d, want 0", len(f.peers))
	}
}

// blockingStore holds every PutMany until release closes, counting them.
type blockingStore struct {
	*blockstore.Memory
	release chan struct{}
	mu      sync.Mutex
	in      int
}

func (s *blockingStore) PutMany(ctx context.Context, bs []blockstore.Block) error {
	s.mu.Lock()
	s.in++
	s.mu.Unlock()
	<-s.release
	return s.Memory.PutMany(ctx, bs)
}

func (s *blockingStore) inside() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.in
}

// A client making more calls to a peer at once than the peer's server
// serves keeps the others waiting on its side: none of its requests waits
// at the server for a turn (holding a stream and its window there).
func TestClientCapsRoundTripsPerPeer(t *testing.T) {
	const calls = 40
	store := &blockingStore{Memory: blockstore.NewMemory(), release: make(chan struct{})}
	n := memnet.New()
	t.Cleanup(n.Close)
	srv := &Server{Store: store}
	n.Listen("b", srv.ServeStream)
	released := false
	defer func() {
		if !released {
			close(store.release)
		}
	}()
	client := &Client{Dialer: n.Dialer("a")}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	errs := make(chan error, calls)
	for i := range calls {
		go func() {
			b := blockstore.NewBlock(blockstore.CodecRaw, []byte{byte(i)})
			errs <- client.Put(ctx, "b", []blockstore.Block{b})
		}()
	}
	// Every call is either served or waiting, here or at the server.
	waitFor(t, "every call in place", func() bool {
		callers, _ := srv.turns.Load("a")
		_, bulk := client.inFlight.waiting("b")
		return store.inside() == MaxServedPerPeer && callers+bulk == calls
	})
	if callers, held := srv.turns.Load("a"); callers != MaxServedPerPeer || held != MaxServedPerPeer {
		t.Fatalf("at the server: %d calls waiting or served, %d served; want %d and %d (the rest waiting at the client)", callers, held, MaxServedPerPeer, MaxServedPerPeer)
	}
	close(store.release)
	released = true
	for range calls {
		if err := <-errs; err != nil {
			t.Fatalf("put: %v", err)
		}
	}
}
