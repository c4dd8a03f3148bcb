package main

import (
	"bytes"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/mesh"
	"github.com/weft-mesh/weft/node"
)

// deadPairProbes is the probe interval of the daemons of
// TestDeadMemberStaysUntilRemoved, and memberlistForgetsDead their
// memberlist's GossipToTheDeadTime: until issue 10 a dead member vanished
// from `weft peers` after it.
const (
	deadPairProbes        = 200 * time.Millisecond
	memberlistForgetsDead = mesh.DeadGossipProbes * deadPairProbes
)

// peerState returns the state h lists for peer id, "" if not listed.
func (h *harness) peerState(id string) string {
	h.t.Helper()
	for _, p := range h.peers() {
		if p.PeerID == id {
			return p.State
		}
	}
	return ""
}

// joinedPair starts two members with daemonArgs added to their daemons',
// b joined to a, and returns once a sees b alive.
func joinedPair(t *testing.T, daemonArgs ...string) (a, b *harness) {
	t.Helper()
	a = initMeshMember(t, "site-a", "127.0.0.1", "")
	b = initMeshMember(t, "site-b", "127.0.0.2", a.home)
	for _, h := range []*harness{a, b} {
		h.daemonArgs = append(h.daemonArgs, daemonArgs...)
		h.startDaemon()
	}
	b.ok("join", a.addr())
	bID := b.peerID()
	eventually(t, "a sees b alive", func() (bool, string) {
		s := a.peerState(bID)
		return s == "alive", s
	})
	return a, b
}

// TestDeadMemberStaysUntilRemoved: a member killed -9 is listed dead well
// past memberlist's reaping of dead nodes, `peers rm` refuses a live member
// and forgets the dead one. Its daemons probe every 200 ms, so memberlist
// reaps the dead after 12 s instead of the default detector's 30 s.
func TestDeadMemberStaysUntilRemoved(t *testing.T) {
	a, b := joinedPair(t, "--probe-interval", deadPairProbes.String())
	bID := b.peerID()
	a.fails("alive", "peers", "rm", bID)

	b.killDaemon()
	eventually(t, "a sees b dead", func() (bool, string) {
		s := a.peerState(bID)
		return s == "dead", s
	})
	// Watched for a bounded time past the reaping, once a second.
	for end := time.Now().Add(memberlistForgetsDead + 5*time.Second); time.Now().Before(end); time.Sleep(time.Second) {
		if s := a.peerState(bID); s != "dead" {
			t.Fatalf("a lists b as %q after it died, want dead until removed", s)
		}
	}
	if out := a.ok("peers", "rm", bID); !strings.Contains(out, bID) {
		t.Errorf("peers rm: got %q, want it to name %s", out, bID)
	}
	if s := a.peerState(bID); s != "" {
		t.Errorf("after peers rm: a lists b as %q, want it gone", s)
	}
	a.fails("not a member", "peers", "rm", bID)
}

// TestRestartKeepsListenPort: a node initialised with port 0 records the
// port its first start picked, listens on it after a restart (its join
// token stays valid), and refuses to start when that port is taken.
func TestRestartKeepsListenPort(t *testing.T) {
	a := meshMember(t, "site-a", "127.0.0.1", "")
	cfg, err := node.Load(a.home)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Listen) != 1 || strings.HasSuffix(cfg.Listen[0], "/tcp/0") {
		t.Fatalf("config listen after the first start: %v, want the picked port recorded", cfg.Listen)
	}
	token := strings.TrimSpace(a.ok("token"))
	a.stopDaemon()
	a.startDaemon()
	if got := a.status().Listen; len(got) != 1 || got[0] != cfg.Listen[0] {
		t.Errorf("listen after a restart: %v, want %v", got, cfg.Listen)
	}
	if got := strings.TrimSpace(a.ok("token")); got != token {
		t.Errorf("join token after a restart: %s, want the same %s", got, token)
	}
	a.stopDaemon()

	_, port, ok := strings.Cut(cfg.Listen[0], "/tcp/") // /ip4/HOST/tcp/PORT
	if !ok || strings.Contains(port, "/") {
		t.Fatalf("listen %q: want /ip4/HOST/tcp/PORT", cfg.Listen[0])
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := a.run(nil, "daemon")
	if r.code == 0 || !strings.Contains(r.stderr, "address already in use") || !strings.Contains(r.stderr, filepath.Join(a.home, node.ConfigFile)) {
		t.Errorf("daemon with its port taken: exit %d, stderr %q; want an error naming the port in use and the config", r.code, r.stderr)
	}
}

// TestMoveSurvivesOwnerDeath: `disk move` returns once the new owner holds
// the catalog entry that names it, so the old owner dying right after the
// move does not leave the disk without an owner.
func TestMoveSurvivesOwnerDeath(t *testing.T) {
	a, b := joinedPair(t)
	bID := b.peerID()
	img := bytes.Repeat([]byte("moved by a, owned by b. "), 1<<16)
	a.ok("disk", "import", "vm", writeTemp(t, "vm.img", img), "--replicas", "2")
	a.ok("disk", "move", "vm", "--to", bID)
	a.killDaemon()
	eventually(t, "b owns vm", func() (bool, string) {
		r := b.run(nil, "disk", "commit", "vm")
		return r.code == 0, r.stderr
	})
	b.wantContent("vm", img)
}
