package mesh

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

const echoProtocol protocol.ID = "/weft/test/echo/1.0.0"

func newSecret(t *testing.T) []byte {
	t.Helper()
	s := make([]byte, 32)
	if _, err := rand.Read(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// eventually waits until cond holds, checking it every 50 ms, and fails the
// test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s: got false, want true", timeout, what)
		}
		<-tick.C
	}
}

func join(t *testing.T, m *Mesh, addrs []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := m.Join(ctx, addrs)
	if err != nil || n == 0 {
		t.Fatalf("join: got %d, %v; want >0, nil", n, err)
	}
}

func member(m *Mesh, id peer.ID) (Member, bool) {
	for _, mem := range m.Members() {
		if peer.ID(mem.ID) == id {
			return mem, true
		}
	}
	return Member{}, false
}

func hasState(m *Mesh, id peer.ID, s State) bool {
	mem, ok := member(m, id)
	return ok && mem.State == s
}

// echo serves echoProtocol: it sends back what it reads.
func echo(s network.Stream) {
	defer s.Close()
	_, _ = io.Copy(s, s)
}

// roundTrip sends msg to p on echoProtocol and returns the reply.
func roundTrip(t *testing.T, from *Mesh, p peer.ID, msg string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, err := from.newStream(ctx, p, echoProtocol)
	if err != nil {
		t.Fatalf("new stream %s -> %s: %v", from.ID(), p, err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := s.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatalf("close write: %v", err)
	}
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(got)
}

// testState is a StateDelegate holding a set of strings: broadcasts add one,
// push-pull exchanges the whole set.
type testState struct {
	mu    sync.Mutex
	items map[string]bool
}

func newTestState() *testState { return &testState{items: make(map[string]bool)} }

func (s *testState) add(item string) {
	s.mu.Lock()
	s.items[item] = true
	s.mu.Unlock()
}

func (s *testState) has(item string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.items[item]
}

func (s *testState) LocalState() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []string
	for it := range s.items {
		items = append(items, it)
	}
	slices.Sort(items)
	b, _ := json.Marshal(items)
	return b
}

func (s *testState) MergeRemoteState(buf []byte) {
	var items []string
	if json.Unmarshal(buf, &items) != nil {
		return
	}
	for _, it := range items {
		s.add(it)
	}
}

func (s *testState) NotifyMsg(buf []byte) { s.add(string(buf)) }
