package nbd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// observed is one call to an Observer.
type observed struct {
	op    string
	bytes int
	d     time.Duration
	err   error
}

type recorder struct {
	mu   sync.Mutex
	seen []observed
}

func (r *recorder) Request(op string, bytes int, d time.Duration, err error) {
	r.mu.Lock()
	r.seen = append(r.seen, observed{op, bytes, d, err})
	r.mu.Unlock()
}

// take returns and forgets what was observed so far.
func (r *recorder) take() []observed {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.seen
	r.seen = nil
	return s
}

func TestObserver(t *testing.T) {
	exps := newMemExports()
	rec := &recorder{}
	// Each clock read is a millisecond later, so a served request takes
	// exactly 1ms.
	var ticks atomic.Int64
	base := time.Now()
	_, connect := testServer(t, exps, func(c *Config) {
		c.Observer = rec
		c.Now = func() time.Time { return base.Add(time.Duration(ticks.Add(1)) * time.Millisecond) }
	})
	c, _ := dial(t, connect, "disk")

	cases := []struct {
		typ, flags uint16
		off        uint64
		length     uint32
		payload    []byte
		want       observed
	}{
		{cmdWrite, cmdFlagFUA, 0, 3, []byte("abc"), observed{OpWrite, 3, time.Millisecond, nil}},
		{cmdRead, 0, 0, 3, nil, observed{OpRead, 3, time.Millisecond, nil}},                 // served inline
		{cmdRead, 0, 0, 100 << 10, nil, observed{OpRead, 100 << 10, time.Millisecond, nil}}, // on a worker
		{cmdFlush, 0, 0, 0, nil, observed{OpFlush, 0, time.Millisecond, nil}},
		{cmdTrim, 0, 4096, 4096, nil, observed{OpTrim, 4096, time.Millisecond, nil}},
		{cmdWriteZeroes, cmdFlagNoHole, 0, 512, nil, observed{OpWriteZeroes, 512, time.Millisecond, nil}},
		{cmdRead, 0, 1 << 20, 1, nil, observed{OpRead, 1, 0, ErrInvalid}},
		{cmdWrite, 0, 1 << 20, 2, []byte("xy"), observed{OpWrite, 2, 0, ErrNoSpace}},
	}
	for _, tc := range cases {
		c.do(tc.typ, tc.flags, tc.off, tc.length, tc.payload)
		got := rec.take()
		if len(got) != 1 || got[0].op != tc.want.op || got[0].bytes != tc.want.bytes || got[0].d != tc.want.d || !errors.Is(got[0].err, tc.want.err) {
			t.Errorf("command %d: got %v, want [%v]", tc.typ, got, tc.want)
		}
	}

	// Unknown commands are refused unobserved.
	c.do(42, 0, 0, 1, nil)
	if got := rec.take(); len(got) != 0 {
		t.Errorf("unknown command: got %v, want nothing observed", got)
	}

	disk := exps.exports["disk"]
	disk.mu.Lock()
	disk.failWith = fmt.Errorf("media error")
	disk.mu.Unlock()
	c.do(cmdRead, 0, 0, 1, nil)
	if got := rec.take(); len(got) != 1 || got[0].op != OpRead || got[0].err == nil {
		t.Errorf("failing read: got %v, want one read with an error", got)
	}
}

func TestObserverReadOnly(t *testing.T) {
	rec := &recorder{}
	_, connect := testServer(t, newMemExports(), func(c *Config) { c.Observer = rec })
	c, _ := dial(t, connect, "disk@r1")
	c.do(cmdTrim, 0, 0, 5, nil)
	if got := rec.take(); len(got) != 1 || got[0].op != OpTrim || !errors.Is(got[0].err, ErrReadOnly) {
		t.Errorf("trim on a read-only export: got %v, want one trim failing with ErrReadOnly", got)
	}
}

// counting is an Observer that only counts, to measure the server's cost.
type counting struct{ n atomic.Int64 }

func (c *counting) Request(string, int, time.Duration, error) { c.n.Add(1) }

// TestObserverAllocs checks that observing a request allocates nothing:
// the Observer sits on the path of every read and write.
func TestObserverAllocs(t *testing.T) {
	obs := &counting{}
	tr := &transmission{
		exp: handle{memExport: &memExport{data: make([]byte, 1<<20)}},
		obs: obs,
		now: time.Now,
		log: slog.New(slog.DiscardHandler),
	}
	buf := getBuf(4096)
	defer putBuf(buf)
	ctx := context.Background()
	for _, req := range []request{
		{Type: cmdRead, Length: 4096},
		{Type: cmdWrite, Length: 4096, Flags: cmdFlagFUA},
		{Type: cmdFlush},
	} {
		if n := testing.AllocsPerRun(100, func() { tr.execute(ctx, job{req: req, buf: buf}) }); n != 0 {
			t.Errorf("command %d: got %v allocations per request, want 0", req.Type, n)
		}
	}
	if obs.n.Load() == 0 {
		t.Fatal("got no requests observed, want some")
	}
}
