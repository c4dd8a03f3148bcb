package nbd

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestNegotiationInfoAndGo(t *testing.T) {
	exps := newMemExports()
	_, connect := testServer(t, exps, nil)
	c := &client{t: t, conn: connect()}
	c.hello(clientFixedNewstyle | clientNoZeroes)

	c.option(optList, nil)
	var names []string
	for {
		r := c.reply()
		if r.typ == repAck {
			break
		}
		if r.typ != repServer {
			t.Fatalf("LIST reply type %#x, want SERVER or ACK", r.typ)
		}
		names = append(names, string(r.data[4:4+binary.BigEndian.Uint32(r.data)]))
	}
	if fmt.Sprint(names) != "[disk disk@r1]" {
		t.Fatalf("LIST: got %v, want [disk disk@r1]", names)
	}

	infos, typ := c.goReplies(optInfo, "disk@r1", infoName, infoDescription, infoBlockSize)
	if typ != repAck {
		t.Fatalf("INFO: reply %#x, want ACK", typ)
	}
	if got := binary.BigEndian.Uint64(infos[infoExport]); got != 1<<20 {
		t.Fatalf("INFO size: got %d, want %d", got, 1<<20)
	}
	flags := binary.BigEndian.Uint16(infos[infoExport][8:])
	if flags&tflagReadOnly == 0 || flags&tflagSendTrim != 0 {
		t.Fatalf("INFO flags %#x: want READ_ONLY and no TRIM on a replica", flags)
	}
	if string(infos[infoName]) != "disk@r1" || string(infos[infoDescription]) != "a test export" {
		t.Fatalf("INFO name %q description %q", infos[infoName], infos[infoDescription])
	}
	bs := infos[infoBlockSize]
	if min, pref, max := binary.BigEndian.Uint32(bs), binary.BigEndian.Uint32(bs[4:]), binary.BigEndian.Uint32(bs[8:]); min != 1 || pref != 4096 || max != MaxPayload {
		t.Fatalf("block sizes %d/%d/%d, want 1/4096/%d", min, pref, max, MaxPayload)
	}

	c.option(optStructuredReply, nil)
	if r := c.reply(); r.typ != repErrUnsup {
		t.Fatalf("STRUCTURED_REPLY: got %#x, want ERR_UNSUP", r.typ)
	}
	c.option(99, []byte("whatever"))
	if r := c.reply(); r.typ != repErrUnsup {
		t.Fatalf("unknown option: got %#x, want ERR_UNSUP", r.typ)
	}
	c.option(optStartTLS, nil)
	if r := c.reply(); r.typ != repErrUnsup {
		t.Fatalf("STARTTLS without a certificate: got %#x, want ERR_UNSUP", r.typ)
	}
	c.option(optGo, []byte{0, 0, 0, 9, 'x'})
	if r := c.reply(); r.typ != repErrInvalid {
		t.Fatalf("GO with a truncated name: got %#x, want ERR_INVALID", r.typ)
	}
	for name, want := range map[string]uint32{"nope": repErrUnknown, "secret": repErrPolicy} {
		if _, typ := c.goReplies(optGo, name); typ != want {
			t.Fatalf("GO %q: got %#x, want %#x", name, typ, want)
		}
	}
	// The refusals left the negotiation usable.
	infos, typ = c.goReplies(optGo, "disk")
	if typ != repAck {
		t.Fatalf("GO disk: reply %#x, want ACK", typ)
	}
	want := tflagHasFlags | tflagSendFlush | tflagSendFUA | tflagSendTrim | tflagSendWriteZeroes | tflagCanMultiConn
	if got := binary.BigEndian.Uint16(infos[infoExport][8:]); got != want {
		t.Fatalf("GO flags %#x, want %#x", got, want)
	}
	if errno, _ := c.do(cmdWrite, 0, 0, 3, []byte("abc")); errno != 0 {
		t.Fatalf("write: errno %d", errno)
	}
	c.send(request{Type: cmdDisc}, nil)
	expectClosed(t, c.conn)
	waitFor(t, func() bool { o, cl := exps.openCount(); return o == cl })
}

func TestExportName(t *testing.T) {
	for _, noZeroes := range []bool{false, true} {
		t.Run(fmt.Sprintf("no_zeroes=%v", noZeroes), func(t *testing.T) {
			_, connect := testServer(t, newMemExports(), nil)
			c := &client{t: t, conn: connect()}
			flags := clientFixedNewstyle
			if noZeroes {
				flags |= clientNoZeroes
			}
			c.hello(flags)
			c.option(optExportName, []byte("disk"))
			n := 10 + 124
			if noZeroes {
				n = 10
			}
			b := c.read(n)
			if got := binary.BigEndian.Uint64(b); got != 1<<20 {
				t.Fatalf("size %d, want %d", got, 1<<20)
			}
			if !bytes.Equal(b[10:], make([]byte, n-10)) {
				t.Fatalf("padding not zero")
			}
			if errno, data := c.do(cmdRead, 0, 0, 4, nil); errno != 0 || !bytes.Equal(data, make([]byte, 4)) {
				t.Fatalf("read: errno %d data %x", errno, data)
			}
		})
	}
	t.Run("unknown", func(t *testing.T) {
		_, connect := testServer(t, newMemExports(), nil)
		c := &client{t: t, conn: connect()}
		c.hello(clientFixedNewstyle)
		c.option(optExportName, []byte("nope"))
		expectClosed(t, c.conn)
	})
}

func TestTransmission(t *testing.T) {
	exps := newMemExports()
	disk := exps.exports["disk"]
	_, connect := testServer(t, exps, nil)
	c, _ := dial(t, connect, "disk")
	size := uint64(1 << 20)
	pattern := bytes.Repeat([]byte{0xab}, 10000)

	if errno, _ := c.do(cmdWrite, cmdFlagFUA, 5000, uint32(len(pattern)), pattern); errno != 0 {
		t.Fatalf("write: errno %d", errno)
	}
	if disk.flushes != 1 {
		t.Fatalf("FUA write: %d flushes, want 1", disk.flushes)
	}
	if _, data := c.do(cmdRead, 0, 5000, uint32(len(pattern)), nil); !bytes.Equal(data, pattern) {
		t.Fatalf("read back differs")
	}
	if errno, _ := c.do(cmdWriteZeroes, 0, 5000, 100, nil); errno != 0 || disk.punches != 1 {
		t.Fatalf("write zeroes: errno %d, punches %d, want 0, 1", errno, disk.punches)
	}
	if errno, _ := c.do(cmdWriteZeroes, cmdFlagNoHole, 5100, 100, nil); errno != 0 || disk.punches != 1 {
		t.Fatalf("write zeroes NO_HOLE: errno %d, punches %d, want 0, 1 (no punch)", errno, disk.punches)
	}
	if errno, _ := c.do(cmdTrim, 0, 5200, 100, nil); errno != 0 || disk.punches != 2 {
		t.Fatalf("trim: errno %d, punches %d, want 0, 2", errno, disk.punches)
	}
	if _, data := c.do(cmdRead, 0, 5000, 400, nil); !bytes.Equal(data[:300], make([]byte, 300)) || data[300] != 0xab {
		t.Fatalf("zeroed range reads %x...", data[:8])
	}
	if errno, _ := c.do(cmdFlush, 0, 0, 0, nil); errno != 0 || disk.flushes != 2 {
		t.Fatalf("flush: errno %d, flushes %d", errno, disk.flushes)
	}

	big := uint32(MaxPayload + 1)
	cases := []struct {
		name    string
		typ     uint16
		flags   uint16
		off     uint64
		length  uint32
		payload bool
		want    uint32
	}{
		{"read of length 0", cmdRead, 0, 0, 0, false, errnoInval},
		{"read past the end", cmdRead, 0, size - 1, 2, false, errnoInval},
		{"read at an offset overflowing", cmdRead, 0, 1<<64 - 1, 2, false, errnoInval},
		{"read over the maximum", cmdRead, 0, 0, big, false, errnoInval},
		{"write past the end", cmdWrite, 0, size - 1, 2, true, errnoNoSpc},
		{"write over the maximum", cmdWrite, 0, 0, big, true, errnoInval},
		{"write zeroes past the end", cmdWriteZeroes, 0, size, 1, false, errnoNoSpc},
		{"trim past the end", cmdTrim, 0, size, 1, false, errnoInval},
		{"unknown command", 42, 0, 0, 1, false, errnoInval},
		{"unknown flag", cmdRead, 1 << 7, 0, 1, false, errnoInval},
		{"NO_HOLE on a write", cmdWrite, cmdFlagNoHole, 0, 1, true, errnoInval},
	}
	for _, tc := range cases {
		var payload []byte
		if tc.payload {
			payload = make([]byte, tc.length)
		}
		if errno, _ := c.do(tc.typ, tc.flags, tc.off, tc.length, payload); errno != tc.want {
			t.Errorf("%s: errno %d, want %d", tc.name, errno, tc.want)
		}
	}
	// Refused writes did not touch the disk and the stream is in step.
	if _, data := c.do(cmdRead, 0, 0, 8, nil); !bytes.Equal(data, make([]byte, 8)) {
		t.Fatalf("after refused writes the disk starts %x, want zeros", data)
	}
	disk.mu.Lock()
	disk.failWith = fmt.Errorf("disk full: %w", ErrNoSpace)
	disk.mu.Unlock()
	if errno, _ := c.do(cmdWrite, 0, 0, 1, []byte{1}); errno != errnoNoSpc {
		t.Fatalf("write on a full store: errno %d, want ENOSPC", errno)
	}
	disk.mu.Lock()
	disk.failWith = fmt.Errorf("media error")
	disk.mu.Unlock()
	if errno, _ := c.do(cmdRead, 0, 0, 1, nil); errno != errnoIO {
		t.Fatalf("read on a failing store: errno %d, want EIO", errno)
	}
}

// TestSharedReader checks that an export's shared slices reach the client
// whole and in order, on the inline path of small reads and on the workers
// of large ones, and that a failing ReadShared is an EIO reply.
func TestSharedReader(t *testing.T) {
	exps := newMemExports()
	reads := 0
	_, connect := testServer(t, sharedExports{memExports: exps, reads: &reads}, nil)
	c, _ := dial(t, connect, "disk")
	disk := exps.exports["disk"]
	pattern := make([]byte, 300<<10)
	for i := range pattern {
		pattern[i] = byte(i * 7 / 1000)
	}
	if errno, _ := c.do(cmdWrite, 0, 4096, uint32(len(pattern)), pattern); errno != 0 {
		t.Fatalf("write: errno %d", errno)
	}
	for _, n := range []int{1, 4500, 64 << 10, len(pattern)} {
		if errno, data := c.do(cmdRead, 0, 4096, uint32(n), nil); errno != 0 || !bytes.Equal(data, pattern[:n]) {
			t.Fatalf("read of %d bytes: errno %d, data differs: %v", n, errno, !bytes.Equal(data, pattern[:n]))
		}
	}
	disk.mu.Lock()
	got := reads
	disk.failWith = fmt.Errorf("media error")
	disk.mu.Unlock()
	if got != 4 {
		t.Fatalf("ReadShared served %d reads, want 4", got)
	}
	if errno, _ := c.do(cmdRead, 0, 0, 100<<10, nil); errno != errnoIO {
		t.Fatalf("read on a failing store: errno %d, want EIO", errno)
	}
}

func TestReadOnlyExport(t *testing.T) {
	exps := newMemExports()
	_, connect := testServer(t, exps, nil)
	c, flags := dial(t, connect, "disk@r1")
	if flags&tflagReadOnly == 0 {
		t.Fatalf("flags %#x: want READ_ONLY", flags)
	}
	for _, typ := range []uint16{cmdWrite, cmdTrim, cmdWriteZeroes} {
		var payload []byte
		if typ == cmdWrite {
			payload = []byte("hello")
		}
		if errno, _ := c.do(typ, 0, 0, 5, payload); errno != errnoPerm {
			t.Fatalf("command %d on a read-only export: errno %d, want EPERM", typ, errno)
		}
	}
	if errno, _ := c.do(cmdFlush, 0, 0, 0, nil); errno != 0 {
		t.Fatalf("flush on a read-only export: errno %d, want 0", errno)
	}
	if exps.exports["disk@r1"].writes != 0 {
		t.Fatalf("read-only export was written")
	}
}

// TestPipelined sends many requests before reading any reply: every reply
// comes back once, with its own cookie and data.
func TestPipelined(t *testing.T) {
	exps := newMemExports()
	_, connect := testServer(t, exps, func(c *Config) { c.MaxInFlight = 4 })
	c, _ := dial(t, connect, "disk")
	const n = 200
	go func() {
		for i := range n {
			blk := bytes.Repeat([]byte{byte(i)}, 4096)
			c.conn.Write(append(encodeRequest(request{Type: cmdWrite, Cookie: uint64(i), Offset: uint64(i%256) * 4096, Length: 4096}), blk...))
		}
	}()
	seen := map[uint64]bool{}
	for range n {
		errno, cookie := c.simpleReply()
		if errno != 0 || seen[cookie] || cookie >= n {
			t.Fatalf("reply cookie %d errno %d (seen before: %v)", cookie, errno, seen[cookie])
		}
		seen[cookie] = true
	}
	for i := range n {
		if _, data := c.do(cmdRead, 0, uint64(i)*4096, 1, nil); data[0] != byte(i) {
			t.Fatalf("block %d holds %d, want %d", i, data[0], i)
		}
	}
}

func TestDisconnectMidWrite(t *testing.T) {
	exps := newMemExports()
	_, connect := testServer(t, exps, nil)
	c, _ := dial(t, connect, "disk")
	c.write(encodeRequest(request{Type: cmdWrite, Cookie: 1, Offset: 0, Length: 8192}))
	c.write(bytes.Repeat([]byte{0xff}, 4096))
	c.conn.Close()
	waitFor(t, func() bool { o, cl := exps.openCount(); return o == cl })
	if got := exps.exports["disk"].snapshot(); !bytes.Equal(got[:8192], make([]byte, 8192)) {
		t.Fatalf("a write cut short was applied")
	}
}

func TestGarbage(t *testing.T) {
	inputs := map[string][]byte{
		"random":          []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"bad client flag": {0, 0, 0, 0x80},
		"bad option magic": append([]byte{0, 0, 0, 3},
			[]byte("IHAVEOPX\x00\x00\x00\x07\x00\x00\x00\x00")...),
		"huge option": append([]byte{0, 0, 0, 3},
			[]byte("IHAVEOPT\x00\x00\x00\x07\xff\xff\xff\xff")...),
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			_, connect := testServer(t, newMemExports(), nil)
			c := &client{t: t, conn: connect()}
			c.read(18)
			go c.conn.Write(in)
			expectClosed(t, c.conn)
		})
	}
	t.Run("bad request magic", func(t *testing.T) {
		exps := newMemExports()
		_, connect := testServer(t, exps, nil)
		c, _ := dial(t, connect, "disk")
		c.write(bytes.Repeat([]byte{0x5a}, requestLen))
		expectClosed(t, c.conn)
	})
}

func TestHandshakeTimeout(t *testing.T) {
	_, connect := testServer(t, newMemExports(), func(c *Config) { c.HandshakeTimeout = 100 * time.Millisecond })
	c := &client{t: t, conn: connect()}
	c.read(18)
	expectClosed(t, c.conn) // the client never sends its flags
}

func TestTLS(t *testing.T) {
	cert := selfSigned(t)
	exps := newMemExports()
	_, connect := testServer(t, exps, func(c *Config) {
		c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		c.TLSRequired = true
	})
	c := &client{t: t, conn: connect()}
	c.hello(clientFixedNewstyle | clientNoZeroes)
	if _, typ := c.goReplies(optGo, "disk"); typ != repErrTLSReqd {
		t.Fatalf("GO before TLS: got %#x, want ERR_TLS_REQD", typ)
	}
	c.option(optStartTLS, nil)
	if r := c.reply(); r.typ != repAck {
		t.Fatalf("STARTTLS: got %#x, want ACK", r.typ)
	}
	tc := tls.Client(c.conn, tlsClientConfig())
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	c.conn = tc
	if _, typ := c.goReplies(optGo, "disk"); typ != repAck {
		t.Fatalf("GO over TLS: got %#x, want ACK", typ)
	}
	if errno, _ := c.do(cmdWrite, 0, 0, 3, []byte("tls")); errno != 0 {
		t.Fatalf("write over TLS: errno %d", errno)
	}
	if _, data := c.do(cmdRead, 0, 0, 3, nil); string(data) != "tls" {
		t.Fatalf("read over TLS: got %q, want %q", data, "tls")
	}

	c2 := &client{t: t, conn: connect()}
	c2.hello(clientFixedNewstyle)
	c2.option(optExportName, []byte("disk"))
	expectClosed(t, c2.conn) // EXPORT_NAME cannot be refused politely
}

func TestServeShutdown(t *testing.T) {
	exps := newMemExports()
	cfg := DefaultConfig()
	cfg.Exports = exps
	cfg.MaxConns = 2
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	var conns []*client
	for range 2 {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		c := &client{t: t, conn: nc}
		c.hello(clientFixedNewstyle | clientNoZeroes)
		if _, typ := c.goReplies(optGo, "disk"); typ != repAck {
			t.Fatalf("GO: %#x", typ)
		}
		conns = append(conns, c)
	}
	// A third connection is over MaxConns: closed at once.
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	expectClosed(t, nc)
	if got := s.Conns(); got != 2 {
		t.Fatalf("Conns: got %d, want 2", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10s of cancellation")
	}
	for _, c := range conns {
		expectClosed(t, c.conn)
	}
	if o, cl := exps.openCount(); o != cl {
		t.Fatalf("%d exports opened, %d closed", o, cl)
	}
}

// waitFor waits up to 5s for cond.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var (
	certOnce sync.Once
	testCert tls.Certificate
)

// selfSigned returns a self-signed certificate for 127.0.0.1.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "weft test"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		testCert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	return testCert
}

// TestClientsAndDisconnect checks that the server names the clients of an
// export (and only of that export) and cuts them on request.
func TestClientsAndDisconnect(t *testing.T) {
	exps := newMemExports()
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
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	open := func(name string) *client {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		c := &client{t: t, conn: nc}
		c.hello(clientFixedNewstyle | clientNoZeroes)
		if _, typ := c.goReplies(optGo, name); typ != repAck {
			t.Fatalf("GO %s: %#x", name, typ)
		}
		// A request answered means transmission has started.
		if errno, _ := c.do(cmdRead, 0, 0, 512, nil); errno != 0 {
			t.Fatalf("read from %s: errno %d", name, errno)
		}
		return c
	}
	head := open("disk")
	open("disk@r1")
	if got := s.Clients("disk"); len(got) != 1 || got[0] != head.conn.LocalAddr().String() {
		t.Fatalf("Clients(disk): got %q, want [%s]", got, head.conn.LocalAddr())
	}
	if got := s.Clients("other"); len(got) != 0 {
		t.Fatalf("Clients(other): got %q, want none", got)
	}
	if got := s.Disconnect("disk"); got != 1 {
		t.Fatalf("Disconnect(disk): got %d, want 1", got)
	}
	expectClosed(t, head.conn)
	waitFor(t, func() bool { return len(s.Clients("disk")) == 0 })
	if got := s.Clients("disk@r1"); len(got) != 1 {
		t.Fatalf("Clients(disk@r1) after disconnecting disk: got %q, want one", got)
	}
}

// gatedExports holds every Open until release is closed, and says on
// opening when one started.
type gatedExports struct {
	*memExports
	opening chan struct{}
	release chan struct{}
}

func (g gatedExports) Open(ctx context.Context, name string, client netip.Addr) (Export, error) {
	g.opening <- struct{}{}
	<-g.release
	return g.memExports.Open(ctx, name, client)
}

// TestDisconnectIfReachesAnOpenUnderWay: a connection whose export is
// being opened when its rules change (DisconnectIf) is closed too, not
// let through to transmit under the rules its open checked.
func TestDisconnectIfReachesAnOpenUnderWay(t *testing.T) {
	exps := gatedExports{memExports: newMemExports(), opening: make(chan struct{}, 1), release: make(chan struct{})}
	s, dial := tcpServer(t, exps)
	var release sync.Once
	t.Cleanup(func() { release.Do(func() { close(exps.release) }) }) // before the server stops
	nc := dial()
	c := &client{t: t, conn: nc}
	c.hello(clientFixedNewstyle | clientNoZeroes)
	c.option(optGo, infoData("disk"))
	<-exps.opening
	if n := s.DisconnectIf(func(export string, _ netip.Addr) bool { return export == "disk" }); n != 1 {
		t.Fatalf("DisconnectIf during the open: closed %d connections, want 1", n)
	}
	release.Do(func() { close(exps.release) })
	expectClosed(t, nc)
}
