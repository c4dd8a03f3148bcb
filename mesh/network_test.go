package mesh

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/weft-mesh/weft/mesh/meshnet"
)

// served is what the test handler saw of one stream.
type served struct {
	from meshnet.PeerID
	data string
	err  error
}

// TestOpenAndHandle: a node learned by address (no gossip) is reached by
// Open; its handler is told who opened the stream; Close ends the stream
// cleanly after what was written, Abort breaks it so that the handler sees
// an error rather than a clean end; a peer nobody can reach is
// ErrUnreachable.
func TestOpenAndHandle(t *testing.T) {
	const proto meshnet.Protocol = "/weft/test/sink/1.0.0"
	secret := newSecret(t)
	a := newTestMesh(t, Config{Secret: secret, Site: "a"})
	b := newTestMesh(t, Config{Secret: secret, Site: "b"})
	started := make(chan struct{}, 1)
	got := make(chan served, 1)
	b.Handle(proto, func(ctx context.Context, from meshnet.PeerID, s io.ReadWriteCloser) {
		var first [1]byte
		if _, err := io.ReadFull(s, first[:]); err != nil {
			got <- served{from: from, err: err}
			return
		}
		started <- struct{}{}
		rest, err := io.ReadAll(s)
		got <- served{from: from, data: string(first[:]) + string(rest), err: err}
	})
	id, err := a.Learn(b.Addrs()[0])
	if err != nil || id != b.Self() {
		t.Fatalf("learn %s: got %s, %v; want %s", b.Addrs()[0], id, err, b.Self())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	receive := func() served {
		t.Helper()
		select {
		case r := <-got:
			return r
		case <-ctx.Done():
			t.Fatal("handler did not end")
		}
		return served{}
	}

	s, err := a.Open(ctx, b.Self(), proto)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if _, err := s.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	<-started
	if r := receive(); r.from != a.Self() || r.data != "hello" || r.err != nil {
		t.Errorf("after Close: handler got %q from %s, %v; want %q from %s, nil", r.data, r.from, r.err, "hello", a.Self())
	}

	s, err = a.Open(ctx, b.Self(), proto)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	<-started
	if err := meshnet.Abort(s); err != nil {
		t.Fatalf("abort: %v", err)
	}
	if r := receive(); r.err == nil {
		t.Errorf("after Abort: handler got %q and a clean end, want an error", r.data)
	}

	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if _, err := a.Open(short, meshnet.TestID("nobody"), proto); !errors.Is(err, meshnet.ErrUnreachable) {
		t.Errorf("open to an unknown peer: got %v, want ErrUnreachable", err)
	}
}
