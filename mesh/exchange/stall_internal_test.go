package exchange

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/internal/peerlimit"
	"github.com/weft-mesh/weft/mesh/memnet"
)

// stallNet serves store on node "b" of a memnet, each served stream
// wrapped by wrap, and returns a Client on node "a".
func stallNet(t *testing.T, store Store, wrap func(io.ReadWriteCloser) io.ReadWriteCloser) *Client {
	t.Helper()
	n := memnet.New()
	t.Cleanup(n.Close)
	srv := &Server{Store: store, Frames: peerlimit.NewBytes(DefaultFrameBudget)} // of its own, as TestStallNoticeKeepsWaiting runs in a bubble
	n.Listen("b", func(ctx context.Context, from string, rw io.ReadWriteCloser) {
		srv.ServeStream(ctx, from, wrap(rw))
	})
	c := &Client{Dialer: n.Dialer("a")}
	t.Cleanup(func() { c.Close() })
	return c
}

// An answer that keeps coming over a slow link is read whole under a
// stall window much shorter than it takes: 512 KiB at about 400 KiB/s
// (4 KiB every 10 ms) spans some three 400 ms windows, each bringing
// about 160 KiB, ten times the minimum. A bound on the whole request, which
// the swarm's member requests had, fails it.
func TestStallWindowKeepsASlowAnswer(t *testing.T) {
	store := blockstore.NewMemory()
	var cids []cid.Cid
	for i := range 4 {
		b := blockstore.NewBlock(blockstore.CodecRaw, bytes.Repeat([]byte{byte(i)}, 128<<10))
		if err := store.Put(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		cids = append(cids, b.CID)
	}
	c := stallNet(t, store, func(rw io.ReadWriteCloser) io.ReadWriteCloser { return throttled{rw} })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	var got int
	err := c.GetEach(WithStallWindow(ctx, 400*time.Millisecond), "b", cids, func(blocks []blockstore.Block) error {
		got += len(blocks)
		return nil
	})
	if err != nil {
		t.Fatalf("get of 512 KiB over a slow link under a 400 ms stall window: %v, want it whole", err)
	}
	if got != len(cids) {
		t.Fatalf("got %d blocks, want %d", got, len(cids))
	}
	t.Logf("512 KiB in %v", time.Since(start))
}

// muteStore takes every Get and answers nothing until its test ends.
type muteStore struct {
	*blockstore.Memory
	stop chan struct{}
}

func (s muteStore) Get(ctx context.Context, c cid.Cid) ([]byte, error) {
	select {
	case <-s.stop:
	case <-ctx.Done():
	}
	return nil, errors.New("test over")
}

// A peer that takes a request and sends nothing fails the round trip with
// ErrStalled about one window later, rather than holding it for ever.
func TestStallWindowEndsAMuteAnswer(t *testing.T) {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	store := muteStore{Memory: blockstore.NewMemory(), stop: stop}
	c := stallNet(t, store, func(rw io.ReadWriteCloser) io.ReadWriteCloser { return rw })
	b := blockstore.NewBlock(blockstore.CodecRaw, []byte("never sent"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := c.GetEach(WithStallWindow(ctx, 200*time.Millisecond), "b", []cid.Cid{b.CID}, func([]blockstore.Block) error { return nil })
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("get from a peer that never answers: %v, want ErrStalled", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("the round trip ended only with the test's own deadline")
	}
}

// heldStore answers a Get once release is closed.
type heldStore struct {
	*blockstore.Memory
	release chan struct{}
}

func (s heldStore) Get(ctx context.Context, c cid.Cid) ([]byte, error) {
	select {
	case <-s.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.Memory.Get(ctx, c)
}

// A stall notice is given once an answer has brought nothing for its
// window, and the round trip goes on to read the answer when it comes; an
// answer that comes at once gives none.
func TestStallNoticeKeepsWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := heldStore{Memory: blockstore.NewMemory(), release: make(chan struct{})}
		b := blockstore.NewBlock(blockstore.CodecRaw, []byte("sent late"))
		if err := store.Put(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		c := stallNet(t, store, func(rw io.ReadWriteCloser) io.ReadWriteCloser { return rw })
		var notices int
		var noticedAt time.Duration
		start := time.Now()
		ctx := WithStallNotice(context.Background(), 200*time.Millisecond, func() {
			notices++
			noticedAt = time.Since(start)
		})
		time.AfterFunc(time.Second, func() { close(store.release) })
		var got int
		if err := c.GetEach(ctx, "b", []cid.Cid{b.CID}, func(blocks []blockstore.Block) error { got += len(blocks); return nil }); err != nil || got != 1 {
			t.Fatalf("get answered after 1 s under a 200 ms stall notice: %d blocks, %v; want the block", got, err)
		}
		if notices != 1 || noticedAt != 200*time.Millisecond {
			t.Fatalf("%d notices, the first after %v; want one, after 200ms", notices, noticedAt)
		}
		if err := c.GetEach(ctx, "b", []cid.Cid{b.CID}, func([]blockstore.Block) error { return nil }); err != nil || notices != 1 {
			t.Fatalf("get answered at once: %v, %d notices in all; want no new one", err, notices)
		}
	})
}
