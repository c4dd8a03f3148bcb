// Package meshnettest is the conformance suite of meshnet.Network: what
// the cluster layer relies on from any network it runs over. Run it from
// a network's own tests.
package meshnettest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weft-mesh/weft/mesh/meshnet"
)

// wait bounds every wait of the suite: networks whose members need time
// to converge get it, and a broken one fails instead of hanging.
const wait = 20 * time.Second

// NewPair returns two fresh networks, members of one cluster (or about to
// be without further calls), whose gossip goes to the StateDelegates da
// and db, and registers their cleanup with t. The suite may Close either
// network itself.
type NewPair func(t *testing.T, da, db meshnet.StateDelegate) (a, b meshnet.Network)

// Run runs the suite over the networks newPair makes.
func Run(t *testing.T, newPair NewPair) {
	t.Run("OpenHandleRoundTrip", func(t *testing.T) { testRoundTrip(t, newPair) })
	t.Run("UnsupportedProtocol", func(t *testing.T) { testUnsupported(t, newPair) })
	t.Run("CloseIsGraceful", func(t *testing.T) { testCloseGraceful(t, newPair) })
	t.Run("AbortBreaksPeer", func(t *testing.T) { testAbort(t, newPair) })
	t.Run("HandlerStreamClosedOnReturn", func(t *testing.T) { testHandlerReturn(t, newPair) })
	t.Run("CloseFailsPeerWriter", func(t *testing.T) { testCloseFailsPeerWriter(t, newPair) })
	t.Run("HandlerReturnFailsPeerWriter", func(t *testing.T) { testHandlerReturnFailsPeerWriter(t, newPair) })
	t.Run("Members", func(t *testing.T) { testMembers(t, newPair) })
	t.Run("MembershipChange", func(t *testing.T) { testMembershipChange(t, newPair) })
	t.Run("Broadcast", func(t *testing.T) { testBroadcast(t, newPair) })
	t.Run("ConcurrentStreams", func(t *testing.T) { testConcurrent(t, newPair) })
}

const (
	echoProto meshnet.Protocol = "/meshnettest/echo/1.0.0"
	sinkProto meshnet.Protocol = "/meshnettest/sink/1.0.0"
)

// echo writes back what it reads until end of stream.
func echo(ctx context.Context, from meshnet.PeerID, s io.ReadWriteCloser) {
	io.Copy(s, s)
}

// eventually polls cond until it holds or the suite's bound passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// receive returns the value sent on c, failing the test after the bound.
func receive[T any](t *testing.T, what string, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(wait):
		t.Fatalf("%s: nothing within %v", what, wait)
		panic("unreachable")
	}
}

func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// alive reports whether in sees member id alive.
func alive(in meshnet.Network, id meshnet.PeerID) bool {
	for _, m := range in.Members() {
		if m.ID == id {
			return m.State == meshnet.StateAlive
		}
	}
	return false
}

// open opens a stream from a to b speaking p once a sees b alive, as
// networks may need time to converge.
func open(t *testing.T, a, b meshnet.Network, p meshnet.Protocol) io.ReadWriteCloser {
	t.Helper()
	eventually(t, "a sees b alive", func() bool { return alive(a, b.Self()) })
	s, err := a.Open(bounded(t), b.Self(), p)
	if err != nil {
		t.Fatalf("Open %s: %v", p, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testRoundTrip(t *testing.T, newPair NewPair) {
	a, b := newPair(t, &delegate{}, &delegate{})
	from := make(chan meshnet.PeerID, 1)
	b.Handle(echoProto, func(ctx context.Context, peer meshnet.PeerID, s io.ReadWriteCloser) {
		from <- peer
		echo(ctx, peer, s)
	})
	s := open(t, a, b, echoProto)
	want := []byte("hello over the mesh")
	if _, err := s.Write(want); err != nil {
		t.Fatalf("Write: %v", err)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(s, got); err != nil {
		t.Fatalf("ReadFull: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("echoed %q, want %q", got, want)
	}
	if peer := receive(t, "handler's peer", from); peer != a.Self() {
		t.Fatalf("handler saw peer %s, want the dialer %s", peer, a.Self())
	}
}

func testUnsupported(t *testing.T, newPair NewPair) {
	a, b := newPair(t, &delegate{}, &delegate{})
	b.Handle(echoProto, echo)
	eventually(t, "a sees b alive", func() bool { return alive(a, b.Self()) })
	s, err := a.Open(bounded(t), b.Self(), "/meshnettest/nobody-serves-this/1.0.0")
	if err == nil {
		s.Close()
		t.Fatal("Open of a protocol b does not serve succeeded")
	}
	if !errors.Is(err, meshnet.ErrUnsupported) {
		t.Fatalf("Open of a protocol b does not serve: got %v, want ErrUnsupported", err)
	}
}

// sink reports what it read, and the error that ended the read, on got.
func sink(got chan<- result) meshnet.Handler {
	return func(ctx context.Context, from meshnet.PeerID, s io.ReadWriteCloser) {
		data, err := io.ReadAll(s)
		got <- result{data, err}
	}
}

type result struct {
	data []byte
	err  error
}

func testCloseGraceful(t *testing.T, newPair NewPair) {
	a, b := newPair(t, &delegate{}, &delegate{})
	got := make(chan result, 1)
	b.Handle(sinkProto, sink(got))
	s := open(t, a, b, sinkProto)
	want := bytes.Repeat([]byte("graceful "), 10000)
	if _, err := s.Write(want); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	r := receive(t, "handler's read", got)
	if r.err != nil {
		t.Fatalf("handler read after a graceful Close: %v", r.err)
	}
	if !bytes.Equal(r.data, want) {
		t.Fatalf("handler read %d bytes, want the %d written", len(r.data), len(want))
	}
}

func testAbort(t *testing.T, newPair NewPair) {
	a, b := newPair(t, &delegate{}, &delegate{})
	const first = "half an exchange"
	started := make(chan struct{})
	got := make(chan result, 1)
	b.Handle(sinkProto, func(ctx context.Context, from meshnet.PeerID, s io.ReadWriteCloser) {
		// Abort before the handler ran may keep it from running at all,
		// so it reports having started an exchange before a aborts it.
		if _, err := io.ReadFull(s, make([]byte, len(first))); err != nil {
			return
		}
		close(started)
		data, err := io.ReadAll(s)
		got <- result{data, err}
	})
	s := open(t, a, b, sinkProto)
	if _, ok := s.(meshnet.Resetter); !ok {
		t.Fatalf("the stream Open returns (%T) is not a meshnet.Resetter", s)
	}
	if _, err := s.Write([]byte(first)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	receive(t, "handler started", started)
	if err := meshnet.Abort(s); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	if r := receive(t, "handler's read", got); r.err == nil {
		t.Fatalf("handler read %q then a clean end of stream after Abort, want an error", r.data)
	}
}

func testHandlerReturn(t *testing.T, newPair NewPair) {
	a, b := newPair(t, &delegate{}, &delegate{})
	handed := make(chan io.ReadWriteCloser, 1)
	b.Handle(sinkProto, func(ctx context.Context, from meshnet.PeerID, s io.ReadWriteCloser) {
		if _, ok := s.(meshnet.Resetter); !ok {
			s.Write([]byte(fmt.Sprintf("not a Resetter: %T", s)))
		}
		s.Write([]byte("bye"))
		handed <- s
	})
	s := open(t, a, b, sinkProto)
	data, err := readAllBounded(t, s)
	if err != nil {
		t.Fatalf("read after the handler returned: %v (read %q)", err, data)
	}
	if string(data) != "bye" {
		t.Fatalf("read %q after the handler returned, want %q", data, "bye")
	}
	receive(t, "handler's stream", handed)
}

// writeUntilError writes chunks of a large reply to s until a write
// fails, and reports that error (nil if all of total went through).
func writeUntilError(s io.Writer, total int) error {
	chunk := make([]byte, 64<<10)
	for sent := 0; sent < total; sent += len(chunk) {
		if _, err := s.Write(chunk); err != nil {
			return err
		}
	}
	return nil
}

// testCloseFailsPeerWriter: the opener reads a little of a large reply
// and Closes; the handler's Write fails instead of blocking forever on a
// reader that is gone (as it would on yamux, whose Close does not tell
// the peer it stopped reading).
func testCloseFailsPeerWriter(t *testing.T, newPair NewPair) {
	a, b := newPair(t, &delegate{}, &delegate{})
	wrote := make(chan error, 1)
	b.Handle(sinkProto, func(ctx context.Context, from meshnet.PeerID, s io.ReadWriteCloser) {
		wrote <- writeUntilError(s, 32<<20)
	})
	s := open(t, a, b, sinkProto)
	if _, err := s.Write([]byte("get")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if _, err := io.ReadFull(s, make([]byte, 1000)); err != nil {
		t.Fatalf("read the start of the reply: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := receive(t, "handler's write after the opener closed", wrote); err == nil {
		t.Fatal("the handler wrote 32 MiB to an opener that had closed, want a failed write")
	}
}

// testHandlerReturnFailsPeerWriter: once the handler returned (its
// stream closed), the opener's Write fails instead of blocking forever.
func testHandlerReturnFailsPeerWriter(t *testing.T, newPair NewPair) {
	a, b := newPair(t, &delegate{}, &delegate{})
	b.Handle(sinkProto, func(ctx context.Context, from meshnet.PeerID, s io.ReadWriteCloser) {
		io.ReadFull(s, make([]byte, 3))
	})
	s := open(t, a, b, sinkProto)
	wrote := make(chan error, 1)
	go func() { wrote <- writeUntilError(s, 8<<20) }()
	if err := receive(t, "opener's write after the handler returned", wrote); err == nil {
		t.Fatal("the opener wrote 8 MiB to a handler that had returned, want a failed write")
	}
}

// readAllBounded reads s to its end, failing the test if that takes
// longer than the suite's bound.
func readAllBounded(t *testing.T, s io.Reader) ([]byte, error) {
	t.Helper()
	done := make(chan result, 1)
	go func() {
		data, err := io.ReadAll(s)
		done <- result{data, err}
	}()
	r := receive(t, "read to end of stream", done)
	return r.data, r.err
}

func testMembers(t *testing.T, newPair NewPair) {
	a, b := newPair(t, &delegate{}, &delegate{})
	for _, view := range []struct {
		name       string
		self, peer meshnet.Network
	}{{"a", a, b}, {"b", b, a}} {
		eventually(t, view.name+" sees both members alive, itself as Self", func() bool {
			ms := view.self.Members()
			if !slices.IsSortedFunc(ms, func(x, y meshnet.Member) int { return bytes.Compare([]byte(x.ID), []byte(y.ID)) }) {
				return false
			}
			var sawSelf, sawPeer bool
			for _, m := range ms {
				switch m.ID {
				case view.self.Self():
					sawSelf = m.Self && m.State == meshnet.StateAlive
				case view.peer.Self():
					sawPeer = !m.Self && m.State == meshnet.StateAlive
				}
			}
			return sawSelf && sawPeer
		})
	}
}

func testMembershipChange(t *testing.T, newPair NewPair) {
	a, b := newPair(t, &delegate{}, &delegate{})
	eventually(t, "a sees b alive", func() bool { return alive(a, b.Self()) })
	changed := make(chan struct{}, 1)
	a.OnMembershipChange(func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	if err := b.Close(); err != nil {
		t.Fatalf("Close b: %v", err)
	}
	eventually(t, "a's membership callback after b left, and b not alive", func() bool {
		select {
		case <-changed:
		default:
			return false
		}
		return !alive(a, b.Self())
	})
	if _, err := b.Open(bounded(t), a.Self(), echoProto); !errors.Is(err, meshnet.ErrClosed) {
		t.Fatalf("Open on a closed network: got %v, want ErrClosed", err)
	}
}

func testBroadcast(t *testing.T, newPair NewPair) {
	db := &delegate{}
	a, b := newPair(t, &delegate{}, db)
	eventually(t, "a sees b alive", func() bool { return alive(a, b.Self()) })
	msg := []byte("news for every member")
	eventually(t, "a's broadcast reaches b's NotifyMsg", func() bool {
		a.Broadcast(msg)
		return db.got(msg)
	})
}

func testConcurrent(t *testing.T, newPair NewPair) {
	a, b := newPair(t, &delegate{}, &delegate{})
	b.Handle(echoProto, echo)
	eventually(t, "a sees b alive", func() bool { return alive(a, b.Self()) })
	const streams = 16
	errs := make(chan error, streams)
	var wg sync.WaitGroup
	for i := range streams {
		wg.Go(func() {
			errs <- echoOnce(bounded(t), a, b.Self(), bytes.Repeat([]byte{byte(i)}, 64<<10))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// echoOnce sends want over a new echo stream, closing the write side by
// reading the reply concurrently, and checks the reply.
func echoOnce(ctx context.Context, a meshnet.Network, to meshnet.PeerID, want []byte) error {
	s, err := a.Open(ctx, to, echoProto)
	if err != nil {
		return fmt.Errorf("Open: %w", err)
	}
	defer s.Close()
	wrote := make(chan error, 1)
	go func() {
		_, err := s.Write(want)
		wrote <- err
	}()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(s, got); err != nil {
		return fmt.Errorf("ReadFull: %w", err)
	}
	if err := <-wrote; err != nil {
		return fmt.Errorf("Write: %w", err)
	}
	if !bytes.Equal(got, want) {
		return errors.New("a concurrent stream echoed other bytes than it sent")
	}
	return nil
}

// delegate records the broadcasts it is given; its state is empty.
type delegate struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (d *delegate) LocalState() []byte          { return nil }
func (d *delegate) MergeRemoteState(buf []byte) {}

func (d *delegate) NotifyMsg(buf []byte) {
	d.mu.Lock()
	d.msgs = append(d.msgs, buf)
	d.mu.Unlock()
}

// got reports whether msg was delivered.
func (d *delegate) got(msg []byte) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.ContainsFunc(d.msgs, func(m []byte) bool { return bytes.Equal(m, msg) })
}
