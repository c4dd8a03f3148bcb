package iscsi

import (
	"errors"
	"net"
	"testing"
	"time"
)

// A timeout left zero takes its own default (a review found the idle and
// write timeouts falling back to the login's 15 s).
func TestTimeoutDefaults(t *testing.T) {
	srv := newTestServer(t, oneTarget(CHAP{}), func(c *Config) {
		c.LoginTimeout, c.IdleTimeout, c.WriteTimeout = 0, 0, -1
	})
	for _, c := range []struct {
		name      string
		got, want time.Duration
	}{
		{"LoginTimeout", srv.cfg.LoginTimeout, DefaultLoginTimeout},
		{"IdleTimeout", srv.cfg.IdleTimeout, DefaultIdleTimeout},
		{"WriteTimeout", srv.cfg.WriteTimeout, DefaultWriteTimeout},
		{"DataOutTimeout", srv.cfg.DataOutTimeout, DefaultDataOutTimeout},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

// A session that owes a write's data and keeps talking (pings, here)
// without sending it loses its session after DataOutTimeout: the idle
// timeout never fires for it, and it held its budget share forever.
func TestWriteDataOutIsBoundedInTime(t *testing.T) {
	addr, _ := startServer(t, oneTarget(CHAP{}), func(c *Config) { c.DataOutTimeout = 200 * time.Millisecond })
	in := dial(t, addr)
	in.loginNone(testIQN, offer)
	in.scsiCmd(cdb10(0x2a, 0, 8), false, true, 4096, nil, true)
	if r := in.recv(); r.opcode() != opR2T {
		t.Fatalf("got opcode %#x, want an R2T", r.opcode())
	}
	// Pings answered keep the session from being idle; the write's data
	// never comes. The session must end well within 10 s.
	in.nc.SetDeadline(time.Now().Add(10 * time.Second))
	for i := uint32(100); ; i++ {
		p := newPDU(opNopOut|0x40, 0x80, i)
		p.put32(20, reservedTag)
		p.put32(24, in.cmdSN)
		err := in.trySend(p)
		var r *pdu
		if err == nil {
			r, err = in.tryRecv()
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("got a session still open after 10 s, want it closed after the 200-ms data-out timeout")
		}
		if err != nil {
			return // closed: the data-out timeout ended the session
		}
		if r.opcode() != opNopIn {
			t.Fatalf("got opcode %#x, want a NOP-In", r.opcode())
		}
	}
}
