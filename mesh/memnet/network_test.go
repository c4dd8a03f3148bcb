package memnet

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// echo copies each stream back to its sender.
func echo(ctx context.Context, from string, rw io.ReadWriteCloser) {
	io.Copy(rw, rw)
}

func newTestNetwork(t *testing.T) *Network {
	t.Helper()
	n := New()
	t.Cleanup(n.Close)
	return n
}

func TestStreamCarriesBytesBothWays(t *testing.T) {
	n := newTestNetwork(t)
	n.Listen("b", echo)
	s, err := n.Dialer("a").OpenStream(context.Background(), "b")
	if err != nil {
		t.Fatalf("OpenStream: %v", err)
	}
	defer s.Close()
	// More than pipeCapacity, written concurrently with the read so the
	// bounded buffers exercise backpressure.
	want := bytes.Repeat([]byte("weft"), 3*pipeCapacity/4)
	go s.Write(want)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(s, got); err != nil {
		t.Fatalf("ReadFull: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("echoed bytes differ from the %d written", len(want))
	}
}

func TestHandlerSeesDialerAndEOF(t *testing.T) {
	n := newTestNetwork(t)
	got := make(chan string, 1)
	n.Listen("b", func(ctx context.Context, from string, rw io.ReadWriteCloser) {
		data, err := io.ReadAll(rw)
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- from + ":" + string(data)
	})
	s, err := n.Dialer("a").OpenStream(context.Background(), "b")
	if err != nil {
		t.Fatalf("OpenStream: %v", err)
	}
	s.Write([]byte("hello"))
	s.Close()
	if g := <-got; g != "a:hello" {
		t.Fatalf("handler got %q, want %q", g, "a:hello")
	}
}

func TestCutBreaksStreamsAndDials(t *testing.T) {
	n := newTestNetwork(t)
	n.Listen("b", echo)
	s, err := n.Dialer("a").OpenStream(context.Background(), "b")
	if err != nil {
		t.Fatalf("OpenStream: %v", err)
	}
	read := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 1))
		read <- err
	}()
	n.Cut("b", "a")
	select {
	case err := <-read:
		if !errors.Is(err, ErrLinkDown) {
			t.Fatalf("read on cut stream: got %v, want ErrLinkDown", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("read on cut stream still blocked after 5s")
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, ErrLinkDown) {
		t.Fatalf("write on cut stream: got %v, want ErrLinkDown", err)
	}
	if _, err := n.Dialer("a").OpenStream(context.Background(), "b"); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("dial across cut: got %v, want ErrUnreachable", err)
	}
	n.Listen("c", echo)
	if _, err := n.Dialer("a").OpenStream(context.Background(), "c"); err != nil {
		t.Fatalf("dial to uncut peer: %v", err)
	}
	n.Heal("a", "b")
	if _, err := n.Dialer("a").OpenStream(context.Background(), "b"); err != nil {
		t.Fatalf("dial after heal: %v", err)
	}
}

func TestDownAndUp(t *testing.T) {
	n := newTestNetwork(t)
	ended := make(chan struct{})
	n.Listen("b", func(ctx context.Context, from string, rw io.ReadWriteCloser) {
		<-ctx.Done()
		close(ended)
	})
	if _, err := n.Dialer("a").OpenStream(context.Background(), "b"); err != nil {
		t.Fatalf("OpenStream: %v", err)
	}
	n.Down("b")
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("handler context still live 5s after Down")
	}
	if _, err := n.Dialer("a").OpenStream(context.Background(), "b"); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("dial to down peer: got %v, want ErrUnreachable", err)
	}
	if _, err := n.Dialer("b").OpenStream(context.Background(), "a"); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("dial from down peer: got %v, want ErrUnreachable", err)
	}
	n.Up("b")
	n.Listen("b", echo)
	if _, err := n.Dialer("a").OpenStream(context.Background(), "b"); err != nil {
		t.Fatalf("dial after Up: %v", err)
	}
}

func TestDialFailures(t *testing.T) {
	n := newTestNetwork(t)
	if _, err := n.Dialer("a").OpenStream(context.Background(), "nobody"); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("dial to unknown peer: got %v, want ErrUnreachable", err)
	}
	n.Listen("b", echo)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := n.Dialer("a").OpenStream(ctx, "b"); !errors.Is(err, context.Canceled) {
		t.Fatalf("dial with cancelled ctx: got %v, want context.Canceled", err)
	}
	n.Close()
	if _, err := n.Dialer("a").OpenStream(context.Background(), "b"); !errors.Is(err, ErrClosed) {
		t.Fatalf("dial after Close: got %v, want ErrClosed", err)
	}
}
