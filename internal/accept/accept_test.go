package accept

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"
)

// script is a listener answering Accept from a list: an error, or a
// connection; past the list it blocks until closed.
type script struct {
	steps  chan any
	closed chan struct{}
}

func (s *script) Accept() (net.Conn, error) {
	select {
	case st := <-s.steps:
		if err, ok := st.(error); ok {
			return nil, err
		}
		return st.(net.Conn), nil
	case <-s.closed:
		return nil, net.ErrClosed
	}
}

func (s *script) Close() error {
	select {
	case <-s.closed:
	default:
		close(s.closed)
	}
	return nil
}

func (s *script) Addr() net.Addr { return &net.TCPAddr{} }

func newScript(steps ...any) *script {
	s := &script{steps: make(chan any, len(steps)), closed: make(chan struct{})}
	for _, st := range steps {
		s.steps <- st
	}
	return s
}

func emfile() error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
}

var discard = slog.New(slog.DiscardHandler)

// Temporary errors are outlived: the connection after them is handed on.
// Ending ctx closes the listener and returns nil.
func TestLoopOutlivesTemporaryErrors(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	ln := newScript(emfile(), emfile(), emfile(), a)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan net.Conn, 1)
	done := make(chan error, 1)
	go func() { done <- Loop(ctx, ln, discard, func(c net.Conn) { got <- c }) }()
	if c := <-got; c != a {
		t.Fatalf("handed %v, want the connection after the errors", c)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Loop after ctx ended: got %v, want nil", err)
	}
	select {
	case <-ln.closed:
	default:
		t.Fatal("the listener is open after Loop returned")
	}
}

// Any other error ends the loop, returned.
func TestLoopReturnsOtherErrors(t *testing.T) {
	err := Loop(context.Background(), newScript(io.ErrUnexpectedEOF), discard, func(net.Conn) { t.Error("handle called") })
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v, want io.ErrUnexpectedEOF wrapped", err)
	}
}

func TestTemporary(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{emfile(), true},
		{os.NewSyscallError("accept4", syscall.ENFILE), true},
		{os.ErrDeadlineExceeded, true},
		{net.ErrClosed, false},
		{io.EOF, false},
	} {
		if got := Temporary(c.err); got != c.want {
			t.Errorf("Temporary(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
