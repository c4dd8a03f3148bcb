package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/api"
)

// needQemuISCSI skips a test when qemu has no iscsi driver.
func needQemuISCSI(t *testing.T) {
	t.Helper()
	needTool(t, "qemu-io", "qemu-utils")
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so"); err != nil {
		t.Skip("qemu has no iscsi driver (Debian package qemu-block-extra; make deps installs it)")
	}
}

// holdOpen opens url with qemu-io, which then waits for commands on its
// stdin, holding its NBD connection or iSCSI session until the test ends
// or the server ends it.
func holdOpen(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	qemu := exec.CommandContext(ctx, "qemu-io", "-f", "raw", url)
	stdin, err := qemu.StdinPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var out strings.Builder
	qemu.Stdout, qemu.Stderr = &out, &out
	if err := qemu.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- qemu.Wait() }()
	t.Cleanup(func() {
		stdin.Close()
		qemu.Process.Kill()
		<-exited
		cancel()
		if t.Failed() {
			t.Logf("qemu-io %s:\n%s", url, out.String())
		}
	})
}

// waitSessions waits until h serves nbd NBD connections and iscsi iSCSI
// sessions.
func (h *harness) waitSessions(what string, nbd, iscsi int) {
	h.t.Helper()
	eventually(h.t, what, func() (bool, string) {
		st := h.status()
		return st.NBDConns == nbd && st.ISCSISessions == iscsi, fmt.Sprintf("%d NBD connections, %d iSCSI sessions", st.NBDConns, st.ISCSISessions)
	})
}

// TestAccessChangeEndsRefusedSessions holds an NBD connection and an
// iSCSI session from 127.0.0.1 to a disk: an acl that still allows them
// keeps them, one that refuses 127.0.0.1 ends both before it answers,
// and a CHAP change ends the iSCSI sessions (they proved the old secret,
// or none) and keeps NBD, which has no CHAP.
func TestAccessChangeEndsRefusedSessions(t *testing.T) {
	needQemuISCSI(t)
	h, addr := iscsiHarness(t)
	nbdAddr := h.status().NBD
	h.ok("disk", "create", "web", "--size", "16M")
	nbdURL := "nbd://" + nbdAddr + "/web"
	iscsiURL := "iscsi://" + addr + "/iqn.2026-11.io.weft:web/0"

	holdOpen(t, nbdURL)
	holdOpen(t, iscsiURL)
	h.waitSessions("qemu-io connected over NBD and iSCSI", 1, 1)
	h.ok("disk", "acl", "web", "--allow", "127.0.0.0/8")
	if st := h.status(); st.NBDConns != 1 || st.ISCSISessions != 1 {
		t.Fatalf("an acl that allows them left %d NBD connections and %d iSCSI sessions, want 1 and 1", st.NBDConns, st.ISCSISessions)
	}
	h.ok("disk", "acl", "web", "--allow", "10.9.9.0/24")
	h.waitSessions("the sessions of a client the acl refuses end", 0, 0)

	h.ok("disk", "acl", "web", "--clear")
	holdOpen(t, nbdURL)
	holdOpen(t, iscsiURL)
	h.waitSessions("qemu-io connected again", 1, 1)
	h.ok("disk", "chap", "web", "--user", "alice", "--secret-file", writeTemp(t, "s", []byte("alice-secret-0123")))
	h.waitSessions("a CHAP change ends the iSCSI session, not the NBD one", 1, 0)
}

// TestTakeCarriesAccess: a disk's rules travel with it. A sets an
// allow-list on one disk and an initiator list and CHAP on another; B
// takes both: a client outside the allow-list is refused there over NBD
// and iSCSI, an initiator outside the list is refused, and, CHAP's
// secrets having stayed on A, every iSCSI login is refused (fail closed,
// and disk info says why) until CHAP is set on B. A, which gives the
// disks up, ends the iSCSI session it served on one of them.
func TestTakeCarriesAccess(t *testing.T) {
	needQemuISCSI(t)
	needTool(t, "nbdinfo", "libnbd-bin")
	ports := func(ip string) []string {
		return []string{"--iscsi", fmt.Sprintf("%s:%d", ip, freePort(t)), "--nbd", fmt.Sprintf("%s:%d", ip, freePort(t))}
	}
	a := meshMember(t, "site-a", "127.0.0.1", "", ports("127.0.0.1")...)
	b := meshMember(t, "site-b", "127.0.0.2", a.home, ports("127.0.0.2")...)
	b.ok("join", a.addr())
	for _, h := range []*harness{a, b} {
		eventually(t, "two members alive", func() (bool, string) { n := h.alivePeers(); return n == 2, fmt.Sprint(n) })
	}
	stA, stB := a.status(), b.status()

	const allowed, secret = "iqn.2026-01.test.weft:allowed", "alice-secret-0123"
	for _, d := range []string{"web", "db", "vm"} {
		a.ok("disk", "create", d, "--size", "16M")
	}
	a.ok("disk", "acl", "db", "--allow", "10.9.9.0/24")
	a.ok("disk", "acl", "web", "--allow-initiator", allowed)
	a.ok("disk", "chap", "web", "--user", "alice", "--secret-file", writeTemp(t, "s", []byte(secret)))
	holdOpen(t, "iscsi://"+stA.ISCSI+"/iqn.2026-11.io.weft:vm/0")
	a.waitSessions("qemu-io logged in to vm on A", 0, 1)

	// The acl announced its record: B, not the owner yet, shows the list.
	if d := b.diskInfo("db"); len(d.Allow) != 1 || d.Allow[0] != "10.9.9.0/24" {
		t.Fatalf("disk info on B before the take: allow %v, want [10.9.9.0/24]", d.Allow)
	}
	for _, d := range []string{"web", "db", "vm"} {
		b.ok("disk", "take", d, "--force")
	}
	a.waitSessions("A gave vm up and ended its iSCSI session", 0, 0)

	// db: the allow-list came along.
	dbNBD := "nbd://" + stB.NBD + "/db"
	if out, code := tool(t, 20*time.Second, "nbdinfo", dbNBD); code == 0 {
		t.Fatalf("nbdinfo from 127.0.0.1 on B of a disk A allowed 10.9.9.0/24 only: exit 0\n%s", out)
	}
	toolOK(t, "nbdinfo", "nbd+unix:///db?socket="+b.home+"/nbd.sock")
	out, code := toolEnv(t, cmdTimeout, nil, "iscsi-inq", "iscsi://"+stB.ISCSI+"/iqn.2026-11.io.weft:db/0")
	refused(t, out, code, "Authorization failure")

	// web: the initiator list came along, and CHAP fails closed on B.
	info := b.ok("disk", "info", "web")
	if !strings.Contains(info, allowed) || !strings.Contains(info, "no secret is set on this node") {
		t.Fatalf("disk info on B does not show the carried initiator list and the missing CHAP secret:\n%s", info)
	}
	if d := b.diskInfo("web"); !d.CHAPMissing || d.CHAPUser != "" {
		t.Fatalf("disk info --json on B: chap_missing %v, chap_user %q; want true and none", d.CHAPMissing, d.CHAPUser)
	}
	webURL := "iscsi://alice%" + secret + "@" + stB.ISCSI + "/iqn.2026-11.io.weft:web/0"
	out, code = toolEnv(t, cmdTimeout, nil, "iscsi-inq", "-i", allowed, webURL)
	refused(t, out, code, "Authorization failure")
	b.ok("disk", "chap", "web", "--user", "alice", "--secret-file", writeTemp(t, "s", []byte(secret)))
	toolOK(t, "iscsi-inq", "-i", allowed, webURL)
	out, code = toolEnv(t, cmdTimeout, nil, "iscsi-inq", webURL)
	refused(t, out, code, "Authorization failure")
}

// A disk's origin and creator travel with it: on B, to which A moved a
// clone CSI made (through the API) and which took a clone made with the
// CLI, disk info --json says what each was cloned from and who made it.
func TestMoveAndTakeCarryOrigin(t *testing.T) {
	a := meshMember(t, "site-a", "127.0.0.1", "")
	b := meshMember(t, "site-b", "127.0.0.2", a.home)
	b.ok("join", a.addr())
	for _, h := range []*harness{a, b} {
		eventually(t, "two members alive", func() (bool, string) { n := h.alivePeers(); return n == 2, fmt.Sprint(n) })
	}
	a.ok("disk", "create", "base", "--size", "16M")
	a.ok("disk", "clone", "base", "plain")
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if _, err := api.NewClient(a.home).Clone(ctx, api.Ref{Disk: "base"}, "vol", api.CreatorCSI); err != nil {
		t.Fatalf("clone vol as CSI on A: %v", err)
	}

	bID := b.peerID()
	a.ok("disk", "move", "vol", "--to", bID)
	eventually(t, "B adopts vol", func() (bool, string) {
		r := b.run(nil, "disk", "commit", "vol")
		return r.code == 0, r.stderr
	})
	b.ok("disk", "take", "plain", "--force")

	for disk, creator := range map[string]string{"vol": api.CreatorCSI, "plain": ""} {
		if d := b.diskInfo(disk); d.Owner != bID || d.Origin != "base" || d.Creator != creator {
			t.Errorf("disk info --json of %s on B: owner %s, origin %q, creator %q; want %s, %q, %q", disk, d.Owner, d.Origin, d.Creator, bID, "base", creator)
		}
	}
	if info := b.ok("disk", "info", "vol"); !strings.Contains(info, "cloned from:") || !strings.Contains(info, "made by:") {
		t.Errorf("disk info of vol on B names no origin or creator:\n%s", info)
	}
}
