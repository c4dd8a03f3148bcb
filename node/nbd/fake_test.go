package nbd

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// memExport is an in-memory export. All connections to one name share it,
// as the node's heads are shared.
type memExport struct {
	mu       sync.Mutex
	data     []byte
	ro       bool
	flushes  int
	punches  int
	writes   int
	failWith error // returned by every I/O call when set
}

func (e *memExport) io(fn func()) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failWith != nil {
		return e.failWith
	}
	fn()
	return nil
}

func (e *memExport) ReadAt(_ context.Context, p []byte, off int64) error {
	return e.io(func() { copy(p, e.data[off:]) })
}

func (e *memExport) WriteAt(_ context.Context, p []byte, off int64) error {
	if e.ro {
		return ErrReadOnly
	}
	return e.io(func() { copy(e.data[off:], p); e.writes++ })
}

func (e *memExport) Zero(_ context.Context, off, n int64, punch bool) error {
	return e.io(func() {
		clear(e.data[off : off+n])
		if punch {
			e.punches++
		}
	})
}

func (e *memExport) Flush(context.Context) error { return e.io(func() { e.flushes++ }) }
func (e *memExport) Size() int64                 { return int64(len(e.data)) }
func (e *memExport) BlockSize() int64            { return 4096 }
func (e *memExport) ReadOnly() bool              { return e.ro }
func (e *memExport) Description() string         { return "a test export" }

func (e *memExport) snapshot() []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	return bytes.Clone(e.data)
}

// handle is what Open returns: closing it does not close the shared export.
type handle struct {
	*memExport
	closed *int
	mu     *sync.Mutex
}

func (h handle) Close() error {
	h.mu.Lock()
	*h.closed++
	h.mu.Unlock()
	return nil
}

// memExports serves memExports by name; "secret" is refused by policy.
type memExports struct {
	mu      sync.Mutex
	exports map[string]*memExport
	opened  int
	closed  int
}

func newMemExports() *memExports {
	return &memExports{exports: map[string]*memExport{
		"disk":    {data: make([]byte, 1<<20)},
		"disk@r1": {data: make([]byte, 1<<20), ro: true},
		"secret":  {data: make([]byte, 4096)},
	}}
}

func (m *memExports) List(context.Context, netip.Addr) ([]string, error) {
	return []string{"disk", "disk@r1"}, nil
}

func (m *memExports) Open(_ context.Context, name string, _ netip.Addr) (Export, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if name == "secret" {
		return nil, fmt.Errorf("export %q: %w", name, ErrPolicy)
	}
	e, ok := m.exports[name]
	if !ok {
		return nil, fmt.Errorf("export %q: %w", name, ErrUnknown)
	}
	m.opened++
	return handle{memExport: e, closed: &m.closed, mu: &m.mu}, nil
}

func (m *memExports) openCount() (opened, closed int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.opened, m.closed
}

// testServer returns a server over exps and a function that connects a
// client to it through net.Pipe, with the server side served in the
// background until the test ends.
func testServer(t *testing.T, exps Exports, edit func(*Config)) (*Server, func() net.Conn) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Exports = exps
	cfg.HandshakeTimeout = 5 * time.Second
	if edit != nil {
		edit(&cfg)
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return s, func() net.Conn {
		c, srv := net.Pipe()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer srv.Close()
			s.serveConn(ctx, srv)
		}()
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
}

// client is a minimal NBD client for the tests.
type client struct {
	t    *testing.T
	conn net.Conn
}

func (c *client) read(n int) []byte {
	c.t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(c.conn, b); err != nil {
		c.t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

func (c *client) write(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// hello reads the greeting and sends client flags.
func (c *client) hello(flags uint32) {
	c.t.Helper()
	g := c.read(18)
	if binary.BigEndian.Uint64(g) != magicInit || binary.BigEndian.Uint64(g[8:]) != magicOpt {
		c.t.Fatalf("greeting %x: bad magic", g)
	}
	if f := binary.BigEndian.Uint16(g[16:]); f != flagFixedNewstyle|flagNoZeroes {
		c.t.Fatalf("handshake flags %#x, want %#x", f, flagFixedNewstyle|flagNoZeroes)
	}
	c.write(binary.BigEndian.AppendUint32(nil, flags))
}

func (c *client) option(opt uint32, data []byte) {
	c.t.Helper()
	b := binary.BigEndian.AppendUint64(nil, magicOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	c.write(append(b, data...))
}

type optReply struct {
	opt, typ uint32
	data     []byte
}

func (c *client) reply() optReply {
	c.t.Helper()
	h := c.read(20)
	if m := binary.BigEndian.Uint64(h); m != magicOptReply {
		c.t.Fatalf("option reply magic %#x, want %#x", m, magicOptReply)
	}
	return optReply{binary.BigEndian.Uint32(h[8:]), binary.BigEndian.Uint32(h[12:]), c.read(int(binary.BigEndian.Uint32(h[16:])))}
}

func infoData(name string, infos ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	return b
}

// goReplies sends NBD_OPT_GO (or INFO) and collects the replies up to the
// final ACK or error.
func (c *client) goReplies(opt uint32, name string, infos ...uint16) (map[uint16][]byte, uint32) {
	c.t.Helper()
	c.option(opt, infoData(name, infos...))
	got := map[uint16][]byte{}
	for {
		r := c.reply()
		if r.opt != opt {
			c.t.Fatalf("reply for option %d, want %d", r.opt, opt)
		}
		if r.typ != repInfo {
			return got, r.typ
		}
		got[binary.BigEndian.Uint16(r.data)] = r.data[2:]
	}
}

// dial connects and negotiates name with NBD_OPT_GO.
func dial(t *testing.T, connect func() net.Conn, name string) (*client, uint16) {
	t.Helper()
	c := &client{t: t, conn: connect()}
	c.hello(clientFixedNewstyle | clientNoZeroes)
	infos, typ := c.goReplies(optGo, name)
	if typ != repAck {
		t.Fatalf("GO %q: reply %#x, want ACK", name, typ)
	}
	return c, binary.BigEndian.Uint16(infos[infoExport][8:])
}

// do sends one request and reads its simple reply (and read data).
func (c *client) do(typ, flags uint16, off uint64, length uint32, payload []byte) (uint32, []byte) {
	c.t.Helper()
	c.send(request{Type: typ, Flags: flags, Cookie: 7, Offset: off, Length: length}, payload)
	errno, cookie := c.simpleReply()
	if cookie != 7 {
		c.t.Fatalf("reply cookie %d, want 7", cookie)
	}
	if typ == cmdRead && errno == 0 {
		return 0, c.read(int(length))
	}
	return errno, nil
}

func (c *client) send(r request, payload []byte) {
	c.t.Helper()
	c.write(append(encodeRequest(r), payload...))
}

func (c *client) simpleReply() (errno uint32, cookie uint64) {
	c.t.Helper()
	h := c.read(simpleReplyLen)
	if m := binary.BigEndian.Uint32(h); m != magicSimpleReply {
		c.t.Fatalf("reply magic %#x, want %#x", m, magicSimpleReply)
	}
	return binary.BigEndian.Uint32(h[4:]), binary.BigEndian.Uint64(h[8:])
}

// expectClosed fails unless the server closes the connection promptly.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after 5s, want it closed")
	}
}

// tlsClientConfig trusts any certificate: the tests check the protocol, not
// the PKI.
func tlsClientConfig() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
}

// sharedExports serves memExports through handles that also implement
// SharedReader, returning each read as 1000-byte pieces of fresh memory.
type sharedExports struct {
	*memExports
	reads *int
}

func (s sharedExports) Open(ctx context.Context, name string, client netip.Addr) (Export, error) {
	e, err := s.memExports.Open(ctx, name, client)
	if err != nil {
		return nil, err
	}
	return sharedHandle{handle: e.(handle), reads: s.reads}, nil
}

type sharedHandle struct {
	handle
	reads *int
}

func (h sharedHandle) ReadShared(_ context.Context, p []byte, off int64) ([][]byte, error) {
	var parts [][]byte
	err := h.io(func() {
		*h.reads++
		data := bytes.Clone(h.data[off : off+int64(len(p))])
		for len(data) > 1000 {
			parts, data = append(parts, data[:1000:1000]), data[1000:]
		}
		parts = append(parts, data)
	})
	return parts, err
}
