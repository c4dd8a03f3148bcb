package accept

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// addrConn is a net.Conn with chosen addresses; nothing else is used.
type addrConn struct {
	net.Conn
	local, remote net.Addr
}

func (c addrConn) LocalAddr() net.Addr  { return c.local }
func (c addrConn) RemoteAddr() net.Addr { return c.remote }

func TestSameHost(t *testing.T) {
	tcp := func(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	for _, tc := range []struct {
		local, remote net.Addr
		want          bool
	}{
		{tcp("127.0.0.1:10809"), tcp("127.0.0.1:5000"), true},
		{tcp("127.0.0.1:10809"), tcp("127.0.0.7:5000"), true},
		{tcp("[::1]:10809"), tcp("[::1]:5000"), true},
		{tcp("[::ffff:127.0.0.1]:10809"), tcp("[::ffff:127.0.0.1]:5000"), true},
		{tcp("10.0.0.5:10809"), tcp("10.0.0.5:5000"), true}, // this host's own address
		{tcp("10.0.0.5:10809"), tcp("10.0.0.6:5000"), false},
		{tcp("[2001:db8::1]:10809"), tcp("[2001:db8::2]:5000"), false},
		{&net.UnixAddr{Name: "/run/weft/nbd.sock", Net: "unix"}, &net.UnixAddr{Net: "unix"}, false},
	} {
		if got := sameHost(addrConn{local: tc.local, remote: tc.remote}); got != tc.want {
			t.Errorf("sameHost(%v -> %v) = %v, want %v", tc.remote, tc.local, got, tc.want)
		}
	}
}

// TestLoopSizesLocalSendBuffer: a connection Loop accepts over loopback
// reaches its handler with the small send buffer, not the autotuned one.
func TestLoopSizesLocalSendBuffer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conns := make(chan net.Conn, 1)
	go Loop(ctx, ln, discard, func(c net.Conn) { conns <- c })
	client, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var srv net.Conn
	select {
	case srv = <-conns:
	case <-time.After(5 * time.Second):
		t.Fatal("no connection handled")
	}
	defer srv.Close()
	rc, err := srv.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var gerr error
	if err := rc.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	// Linux caps the value asked for at net.core.wmem_max and doubles it,
	// for its bookkeeping.
	want := localSendBuffer
	if b, err := os.ReadFile("/proc/sys/net/core/wmem_max"); err == nil {
		if max, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			want = min(want, max)
		}
	}
	if got != 2*want {
		t.Fatalf("SO_SNDBUF %d, want %d", got, 2*want)
	}
}
