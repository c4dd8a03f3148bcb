package iscsi

import (
	"testing"
)

// One client address may hold DefaultMaxClientSessions sessions: the
// next login is refused with 0x0206 (too many connections) and its
// connection closed, rather than let one client fill the server's
// MaxSessions. A session ended frees its place.
func TestClientSessionsAreCapped(t *testing.T) {
	addr, srv := startServer(t, oneTarget(CHAP{}), nil)
	var ins []*initiator
	for i := range DefaultMaxClientSessions {
		in := dial(t, addr)
		in.isid[5] = byte(i)
		in.loginNone(testIQN, offer)
		ins = append(ins, in)
	}
	in := dial(t, addr)
	in.isid[5] = 0xee
	st, _, _ := in.exchange(stageSecurity, stageOperational, true, textKeys{
		{"InitiatorName", "iqn.2000-01.test:ini"}, {"TargetName", testIQN}, {"AuthMethod", "None"}})
	if st == statusSuccess {
		st, _, _ = in.exchange(stageOperational, stageFullFeature, true, offer)
	}
	if st != statusTooManyConns {
		t.Fatalf("login %d from one client: got status %#04x, want %#04x", DefaultMaxClientSessions+1, uint16(st), uint16(statusTooManyConns))
	}
	if _, err := readPDU(in.r, 1<<20, digests{}); err == nil {
		t.Fatal("got the refused connection open, want it closed")
	}
	if n := len(srv.Sessions()); n != DefaultMaxClientSessions {
		t.Fatalf("got %d sessions, want %d", n, DefaultMaxClientSessions)
	}
	// A reinstatement replaces a session rather than add one: it is let in.
	again := dial(t, addr)
	again.isid = ins[0].isid
	again.loginNone(testIQN, offer)
}
