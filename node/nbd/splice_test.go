package nbd

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fileExport is an export backed by a file, which the server may splice
// write payloads into.
type fileExport struct {
	f       *os.File
	size    int64
	splices atomic.Int64 // writes that came through WriteFrom
}

func (e *fileExport) ReadAt(_ context.Context, p []byte, off int64) error {
	_, err := e.f.ReadAt(p, off)
	return err
}

func (e *fileExport) WriteAt(_ context.Context, p []byte, off int64) error {
	_, err := e.f.WriteAt(p, off)
	return err
}

func (e *fileExport) WriteFrom(_ context.Context, _, _ int64, fill func(*os.File) error) error {
	e.splices.Add(1)
	return fill(e.f)
}

func (e *fileExport) Zero(context.Context, int64, int64, bool) error { return nil }
func (e *fileExport) Flush(context.Context) error                    { return e.f.Sync() }
func (e *fileExport) Size() int64                                    { return e.size }
func (e *fileExport) BlockSize() int64                               { return 4096 }
func (e *fileExport) ReadOnly() bool                                 { return false }
func (e *fileExport) Description() string                            { return "" }
func (e *fileExport) Close() error                                   { return nil }

// fileExports serves one export (a fileExport) as "disk".
type fileExports struct{ e Export }

func (x fileExports) List(context.Context, netip.Addr) ([]string, error) {
	return []string{"disk"}, nil
}

func (x fileExports) Open(context.Context, string, netip.Addr) (Export, error) { return x.e, nil }

func newFileExport(t *testing.T, size int64) *fileExport {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return &fileExport{f: f, size: size}
}

// tcpServer serves exps on a loopback TCP listener (splicing needs a real
// socket, which net.Pipe is not) and returns a dialer.
func tcpServer(t *testing.T, exps Exports) (*Server, func() net.Conn) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Exports = exps
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.Serve(ctx, ln)
	}()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
	})
	return s, func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(20 * time.Second))
		return c
	}
}

// TestSplicedWrites pipelines large writes, unaligned and with FUA, among
// small ones, over TCP: they are spliced into the export's file, and
// everything reads back as written. No two overlap: writes in flight
// together may land in any order, as the protocol allows.
func TestSplicedWrites(t *testing.T) {
	const size = 16 << 20
	exp := newFileExport(t, size)
	_, connect := tcpServer(t, fileExports{exp})
	c, _ := dial(t, connect, "disk")
	want := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	type w struct {
		off, n int
		flags  uint16
	}
	writes := []w{{0, 1 << 20, 0}, {1 << 20, 1 << 20, 0}, {5<<20 + 3, 300<<10 + 7, 0}, {9 << 20, 4096, 0}, {9<<20 + 4096, 200 << 10, cmdFlagFUA}, {12 << 20, 2 << 20, 0}, {14<<20 + 5, 1 << 20, 0}}
	var stream []byte
	large := 0
	for i, wr := range writes {
		p := make([]byte, wr.n)
		for k := range p {
			p[k] = byte(rng.IntN(256))
		}
		copy(want[wr.off:], p)
		stream = append(stream, encodeRequest(request{Type: cmdWrite, Flags: wr.flags, Cookie: uint64(i), Offset: uint64(wr.off), Length: uint32(wr.n)})...)
		stream = append(stream, p...)
		if wr.n >= spliceMin {
			large++
		}
	}
	go c.conn.Write(stream) // all at once: payloads arrive behind buffered headers
	for range writes {
		if errno, cookie := c.simpleReply(); errno != 0 {
			t.Fatalf("write %d: errno %d", cookie, errno)
		}
	}
	for off := 0; off < size; off += 1 << 20 {
		if _, got := c.do(cmdRead, 0, uint64(off), 1<<20, nil); !bytes.Equal(got, want[off:off+1<<20]) {
			t.Fatalf("MiB at %d differs from what was written", off)
		}
	}
	if n := exp.splices.Load(); n == 0 || n > int64(large) {
		t.Fatalf("%d writes spliced, want between 1 and the %d large ones", n, large)
	}
}

// TestSplicedWriteDisconnect: a client that vanishes halfway through a
// large write's payload changes nothing.
func TestSplicedWriteDisconnect(t *testing.T) {
	exp := newFileExport(t, 4<<20)
	s, connect := tcpServer(t, fileExports{exp})
	c, _ := dial(t, connect, "disk")
	c.write(encodeRequest(request{Type: cmdWrite, Cookie: 1, Offset: 0, Length: 1 << 20}))
	c.write(bytes.Repeat([]byte{0xee}, 600<<10))
	c.conn.Close()
	waitFor(t, func() bool { return s.Conns() == 0 })
	got := make([]byte, 1<<20)
	if _, err := exp.f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, make([]byte, 1<<20)) {
		t.Fatal("a write whose payload never arrived whole changed the export")
	}
}

// TestPipeFullFallsBack fills a pipe too small for the payload: the part
// in the pipe and the rest still in the socket come back whole, in order,
// in a buffer.
func TestPipeFullFallsBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cli, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	small, err := newPipe()
	if err != nil {
		t.Fatal(err)
	}
	if small.cap, err = unix.FcntlInt(uintptr(small.w), unix.F_SETPIPE_SZ, 64<<10); err != nil {
		t.Fatal(err)
	}
	tr := &transmission{
		raw:          spliceConn(srv),
		pipes:        make(chan *pipe, 1),
		npipes:       1,
		pipeCapacity: 1 << 20, // what it believes; the pipe holds less
		log:          slog.New(slog.DiscardHandler),
	}
	tr.pipes <- small
	defer tr.closePipes()
	payload := make([]byte, 700<<10)
	for i := range payload {
		payload[i] = byte(i * 31 / 4096)
	}
	go cli.Write(payload)
	j, err := tr.readSpliced(bufio.NewReader(srv), request{Type: cmdWrite, Length: uint32(len(payload))})
	if err != nil {
		t.Fatal(err)
	}
	defer j.release()
	if j.pipe != nil || j.buf == nil {
		t.Fatalf("job has pipe %v, buf %v: want the payload in a buffer", j.pipe != nil, j.buf != nil)
	}
	if !bytes.Equal(*j.buf, payload) {
		t.Fatalf("payload differs from what was sent at byte %d", firstDiffAt(*j.buf, payload))
	}
}

func firstDiffAt(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// gatedExport is a fileExport whose spliced writes wait for a gate; it
// counts those waiting and records the offsets in the order they came.
type gatedExport struct {
	*fileExport
	gate    chan struct{}
	waiting atomic.Int64

	mu   sync.Mutex
	offs []int64
}

func (e *gatedExport) WriteFrom(ctx context.Context, off, n int64, fill func(*os.File) error) error {
	e.mu.Lock()
	e.offs = append(e.offs, off)
	e.mu.Unlock()
	e.waiting.Add(1)
	<-e.gate
	return e.fileExport.WriteFrom(ctx, off, n, fill)
}

func (e *gatedExport) order() []int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.offs)
}

// TestSplicedFUAWritesInFlight: while large FUA writes wait in the export
// (the file's inode lock, writeback, the flush), the connection goes on
// taking the next ones into pipes, up to maxPipes of them, instead of
// leaving the client's data in the socket; then they all land.
func TestSplicedFUAWritesInFlight(t *testing.T) {
	const n = maxPipes
	exp, c, release := gatedConn(t, n)
	go c.conn.Write(writeStream(n, cmdFlagFUA))
	waitFor(t, func() bool { return exp.waiting.Load() == n })
	release()
	checkWrites(t, c, n)
}

// TestSplicedWritesInOrder: large writes without FUA are applied on the
// connection's reader, one at a time in the order they came: while one
// waits in the export the next is not taken, and none is lost.
func TestSplicedWritesInOrder(t *testing.T) {
	const n = 4
	exp, c, release := gatedConn(t, n)
	go c.conn.Write(writeStream(n, 0))
	waitFor(t, func() bool { return exp.waiting.Load() == 1 })
	time.Sleep(100 * time.Millisecond) // time for a second write to start, were it handed off
	if got := exp.waiting.Load(); got != 1 {
		t.Fatalf("%d writes in the export at once, want 1", got)
	}
	release()
	checkWrites(t, c, n)
	if got := exp.order(); !slices.Equal(got, []int64{0, 1 << 20, 2 << 20, 3 << 20}) {
		t.Fatalf("writes applied at offsets %v, want them in the order sent", got)
	}
}

// gatedConn serves a gatedExport of n MiB and returns it, a client
// connected to it, and the function that opens its gate.
func gatedConn(t *testing.T, n int) (*gatedExport, *client, func()) {
	exp := &gatedExport{fileExport: newFileExport(t, int64(n)<<20), gate: make(chan struct{})}
	_, connect := tcpServer(t, fileExports{exp})
	var open sync.Once
	release := func() { open.Do(func() { close(exp.gate) }) }
	t.Cleanup(release) // before the server's cleanup waits for the writes
	c, _ := dial(t, connect, "disk")
	return exp, c, release
}

// writeStream is n write requests of 1 MiB, MiB i filled with i+1.
func writeStream(n int, flags uint16) []byte {
	var stream []byte
	for i := range n {
		stream = append(stream, encodeRequest(request{Type: cmdWrite, Flags: flags, Cookie: uint64(i), Offset: uint64(i) << 20, Length: 1 << 20})...)
		stream = append(stream, bytes.Repeat([]byte{byte(i + 1)}, 1<<20)...)
	}
	return stream
}

// checkWrites reads the replies of writeStream's n writes and then the
// export's n MiB back.
func checkWrites(t *testing.T, c *client, n int) {
	t.Helper()
	for range n {
		if errno, cookie := c.simpleReply(); errno != 0 {
			t.Fatalf("write %d: errno %d", cookie, errno)
		}
	}
	for i := range n {
		if _, got := c.do(cmdRead, 0, uint64(i)<<20, 1<<20, nil); !bytes.Equal(got, bytes.Repeat([]byte{byte(i + 1)}, 1<<20)) {
			t.Fatalf("MiB %d differs from what was written", i)
		}
	}
}
