package mesh

import (
	"syscall"
	"testing"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"golang.org/x/sys/unix"
)

// notSentLowat reads TCP_NOTSENT_LOWAT off c's socket.
func notSentLowat(t *testing.T, c manet.Conn) int {
	t.Helper()
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT)
	}); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// TestTCPConnectionsBoundUnsentBytes: a connection accepted through the
// listener lowatUpgrader gates, and one bounded as Upgrade bounds dialled
// ones, accept at most tcpNotSentLowat unsent bytes; a plain socket does
// not (the kernel's default is unbounded).
func TestTCPConnectionsBoundUnsentBytes(t *testing.T) {
	l, err := manet.Listen(ma.StringCast("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan manet.Conn, 1)
	go func() {
		c, err := lowatListener{l}.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	var d manet.Dialer
	dialled, err := d.Dial(l.Multiaddr())
	if err != nil {
		t.Fatal(err)
	}
	defer dialled.Close()
	in := <-accepted
	if in == nil {
		return
	}
	defer in.Close()

	if got := notSentLowat(t, in); got != tcpNotSentLowat {
		t.Errorf("accepted connection: TCP_NOTSENT_LOWAT %d, want %d", got, tcpNotSentLowat)
	}
	if got := notSentLowat(t, dialled); got == tcpNotSentLowat {
		t.Fatalf("plain socket already has TCP_NOTSENT_LOWAT %d: the test shows nothing", got)
	}
	if err := boundUnsent(dialled); err != nil {
		t.Fatal(err)
	}
	if got := notSentLowat(t, dialled); got != tcpNotSentLowat {
		t.Errorf("dialled connection: TCP_NOTSENT_LOWAT %d, want %d", got, tcpNotSentLowat)
	}
}
