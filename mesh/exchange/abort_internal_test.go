package exchange

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
)

// resettable is one end of a net.Pipe that records whether it was reset
// (meshnet.Resetter) rather than closed.
type resettable struct {
	net.Conn
	reset atomic.Bool
}

func (r *resettable) Reset() error {
	r.reset.Store(true)
	return r.Conn.Close()
}

type pipeDialer struct{ end *resettable }

func (d pipeDialer) OpenStream(ctx context.Context, peer string) (io.ReadWriteCloser, error) {
	return d.end, nil
}

// TestClientAbortsOnCancel: a call cancelled while the server has not
// answered breaks the stream instead of closing it gracefully, so the
// server's write of the reply fails rather than waiting on a reader that
// is gone.
func TestClientAbortsOnCancel(t *testing.T) {
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	end := &resettable{Conn: client}
	c := &Client{Dialer: pipeDialer{end}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, "b", []cid.Cid{blockstore.NewBlock(blockstore.CodecRaw, []byte("x")).CID})
		got <- err
	}()
	// The server reads the request and never answers; then the caller gives up.
	if _, err := readFrame(bufio.NewReader(server), into(&bytes.Buffer{})); err != nil {
		t.Fatalf("read the request: %v", err)
	}
	cancel()
	select {
	case err := <-got:
		if err == nil {
			t.Fatal("Get succeeded after its context ended")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Get did not return after its context ended")
	}
	if !end.reset.Load() {
		t.Fatal("the cancelled call closed its stream gracefully, want it aborted")
	}
}

// TestServerAbortsUnreadReply: a peer that asks for a block and never
// reads the reply holds the server only until the write bound passes.
func TestServerAbortsUnreadReply(t *testing.T) {
	block := blockstore.NewBlock(blockstore.CodecRaw, bytes.Repeat([]byte("b"), 1<<20))
	store := blockstore.NewMemory()
	if err := store.PutMany(context.Background(), []blockstore.Block{block}); err != nil {
		t.Fatalf("PutMany: %v", err)
	}
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	srv := &Server{Store: store, writeBound: 100 * time.Millisecond}
	done := make(chan struct{})
	go func() {
		srv.ServeStream(context.Background(), "a", server)
		close(done)
	}()
	if _, err := client.Write(frame(encodedRequest(t, request{op: opGet, cids: []cid.Cid{block.CID}}))); err != nil {
		t.Fatalf("write the request: %v", err)
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the server still writes a reply nobody reads")
	}
}
