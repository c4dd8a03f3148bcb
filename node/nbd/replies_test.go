package nbd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
)

// lockedBuffer records writes; a slow writer makes replies pile up.
type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

// TestReplyWriterKeepsRepliesWhole sends replies from many goroutines at
// once: every reply must arrive whole and contiguous, none lost.
func TestReplyWriterKeepsRepliesWhole(t *testing.T) {
	var out lockedBuffer
	w := newReplyWriter(&out)
	const senders, each = 16, 200
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				var hdr [8]byte
				binary.BigEndian.PutUint32(hdr[:4], uint32(g))
				binary.BigEndian.PutUint32(hdr[4:], uint32(i))
				data := bytes.Repeat([]byte{byte(g)}, 100+g)
				if err := w.send(hdr[:], data); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	next := make([]uint32, senders)
	b := out.b.Bytes()
	for n := 0; n < senders*each; n++ {
		if len(b) < 8 {
			t.Fatalf("output ends after %d of %d replies", n, senders*each)
		}
		g, i := binary.BigEndian.Uint32(b[:4]), binary.BigEndian.Uint32(b[4:8])
		if g >= senders || i != next[g] {
			t.Fatalf("reply %d: sender %d number %d, want number %d: replies torn or reordered within a sender", n, g, i, next[g])
		}
		next[g]++
		size := 100 + int(g)
		if !bytes.Equal(b[8:8+size], bytes.Repeat([]byte{byte(g)}, size)) {
			t.Fatalf("reply %d from sender %d: payload torn", n, g)
		}
		b = b[8+size:]
	}
	if len(b) != 0 {
		t.Fatalf("%d bytes after the last reply", len(b))
	}
	t.Logf("%d replies in %d writes", senders*each, out.writes)
}

type failingWriter struct{}

func (failingWriter) Write(p []byte) (int, error) { return 0, errors.New("broken pipe") }

func TestReplyWriterErrorIsSticky(t *testing.T) {
	w := newReplyWriter(failingWriter{})
	if err := w.send([]byte("x")); err == nil {
		t.Fatal("send on a broken connection: got nil error")
	}
	if err := w.send([]byte("y")); err == nil {
		t.Fatal("second send on a broken connection: got nil error")
	}
}

// TestInline: small reads and small writes without FUA are served on the
// connection's reader goroutine; large ones, FUA writes, other commands and
// refused requests go to the workers (or the refusal path).
func TestInline(t *testing.T) {
	tr := &transmission{size: 1 << 20}
	ro := &transmission{size: 1 << 20, ro: true}
	for _, tc := range []struct {
		t    *transmission
		req  request
		want bool
	}{
		{tr, request{Type: cmdRead, Length: 4096}, true},
		{tr, request{Type: cmdRead, Length: inlineMax}, true},
		{tr, request{Type: cmdRead, Length: inlineMax + 1}, false},
		{tr, request{Type: cmdWrite, Length: 4096}, true},
		{tr, request{Type: cmdWrite, Length: inlineMax}, true},
		{tr, request{Type: cmdWrite, Length: inlineMax + 1}, false},
		{tr, request{Type: cmdWrite, Length: 4096, Flags: cmdFlagFUA}, false},
		{tr, request{Type: cmdWrite, Offset: 1 << 20, Length: 4096}, false}, // ENOSPC
		{ro, request{Type: cmdWrite, Length: 4096}, false},                  // EPERM
		{tr, request{Type: cmdTrim, Length: 4096}, false},
		{tr, request{Type: cmdFlush}, false},
	} {
		if got := tc.t.inline(tc.req); got != tc.want {
			t.Errorf("inline(%+v) on a read-only %v export = %v, want %v", tc.req, tc.t.ro, got, tc.want)
		}
	}
}
