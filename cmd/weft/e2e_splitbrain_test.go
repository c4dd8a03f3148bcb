package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-mesh/weft/api"
)

// netnsLink is a network namespace joined to the root namespace by a veth
// pair: the namespace side has nsIP, the root side rootIP. Cutting the
// link (taking the root end down) partitions the namespace off.
type netnsLink struct {
	t              *testing.T
	ns, root       string
	nsIP, rootIP   string
	nsDev, rootDev string
}

func newNetnsLink(t *testing.T) *netnsLink {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("split-brain test needs root for network namespaces")
	}
	needTool(t, "ip", "iproute2")
	id := os.Getpid() % 10000
	l := &netnsLink{
		t: t, ns: fmt.Sprintf("weft-sb-%d", id),
		nsIP: "10.231.0.2", rootIP: "10.231.0.1",
		nsDev: fmt.Sprintf("wsb%dn", id), rootDev: fmt.Sprintf("wsb%dr", id),
	}
	t.Cleanup(func() {
		tool(t, cmdTimeout, "ip", "link", "del", l.rootDev)
		tool(t, cmdTimeout, "ip", "netns", "del", l.ns)
	})
	toolOK(t, "ip", "netns", "add", l.ns)
	toolOK(t, "ip", "link", "add", l.rootDev, "type", "veth", "peer", "name", l.nsDev)
	toolOK(t, "ip", "link", "set", l.nsDev, "netns", l.ns)
	toolOK(t, "ip", "addr", "add", l.rootIP+"/24", "dev", l.rootDev)
	toolOK(t, "ip", "link", "set", l.rootDev, "up")
	toolOK(t, "ip", "netns", "exec", l.ns, "ip", "addr", "add", l.nsIP+"/24", "dev", l.nsDev)
	toolOK(t, "ip", "netns", "exec", l.ns, "ip", "link", "set", l.nsDev, "up")
	toolOK(t, "ip", "netns", "exec", l.ns, "ip", "link", "set", "lo", "up")
	return l
}

func (l *netnsLink) cut()    { toolOK(l.t, "ip", "link", "set", l.rootDev, "down") }
func (l *netnsLink) rejoin() { toolOK(l.t, "ip", "link", "set", l.rootDev, "up") }

// nbdWrite writes a pattern through the node's NBD unix socket with
// qemu-io and flushes: when it returns, the write is acknowledged.
func (h *harness) nbdWrite(disk string, pattern byte, off, n int) {
	h.t.Helper()
	url := fmt.Sprintf("nbd+unix:///%s?socket=%s", disk, filepath.Join(h.home, "nbd.sock"))
	toolOK(h.t, "qemu-io", "-f", "raw", "-c", fmt.Sprintf("write -P 0x%02x %d %d", pattern, off, n), "-c", "flush", url)
}

// TestSplitBrainFencesOldOwner cuts the owner of a disk off the mesh; the
// other side takes the disk over (a higher epoch) and writes to it while
// the old owner, unaware, acknowledges writes of its own. When the
// partition heals, every catalog names the new owner, the old owner gives
// the disk up, and its acknowledged writes survive in a fenced replica:
// nothing acknowledged is lost.
func TestSplitBrainFencesOldOwner(t *testing.T) {
	needTool(t, "qemu-io", "qemu-utils")
	link := newNetnsLink(t)

	a := newHarness(t, filepath.Join(t.TempDir(), "a"))
	a.ok("init", "--site", "site-a", "--nbd", "off", "--listen", "/ip4/"+link.nsIP+"/tcp/0")
	a.netns, a.daemonArgs = link.ns, []string{"--heal-interval", healInterval}
	a.startDaemon()
	b := newHarness(t, filepath.Join(t.TempDir(), "b"))
	b.ok("init", "--site", "site-b", "--nbd", "off", "--listen", "/ip4/"+link.rootIP+"/tcp/0",
		"--cluster-secret-file", filepath.Join(a.home, "cluster.secret"))
	b.daemonArgs = []string{"--heal-interval", healInterval}
	b.startDaemon()
	c := newHarness(t, filepath.Join(t.TempDir(), "c"))
	c.ok("init", "--site", "site-c", "--nbd", "off", "--listen", "/ip4/"+link.rootIP+"/tcp/0",
		"--cluster-secret-file", filepath.Join(a.home, "cluster.secret"))
	c.daemonArgs = []string{"--heal-interval", healInterval}
	c.startDaemon()
	b.ok("join", a.addr())
	c.ok("join", a.addr())
	for _, h := range []*harness{a, b, c} {
		eventually(t, "three members alive", func() (bool, string) { n := h.alivePeers(); return n == 3, fmt.Sprint(n) })
	}

	const mib = 1 << 20
	a.ok("disk", "create", "db", "--size", "8M")
	a.nbdWrite("db", 0x11, 0, mib)
	a.ok("disk", "commit", "db")
	eventually(t, "db replicated and published", func() (bool, string) {
		d, why := c.tryDiskInfo("db")
		ad := a.diskInfo("db")
		return d.Root != "" && ad.UnderReplicated == 0 && d.Root == ad.Root, fmt.Sprintf("%+v %s", d, why)
	})

	link.cut()
	eventually(t, "B sees A gone", func() (bool, string) { n := b.alivePeers(); return n == 2, fmt.Sprint(n) })
	b.ok("disk", "take", "db")
	b.nbdWrite("db", 0x22, mib, mib)
	b.ok("disk", "commit", "db")
	a.nbdWrite("db", 0x33, 2*mib, mib) // acknowledged on the wrong side
	a.ok("disk", "commit", "db")

	link.rejoin()
	aID, bID := a.peerID(), b.peerID()
	eventually(t, "catalogs converge on B as the owner", func() (bool, string) {
		var states []string
		ok := true
		for _, h := range []*harness{a, b, c} {
			d, _ := h.tryDiskInfo("db")
			states = append(states, fmt.Sprintf("%s: owner %s epoch %d", filepath.Base(h.home), d.Owner, d.Epoch))
			ok = ok && d.Owner == bID && d.Epoch == 2
		}
		return ok && a.alivePeers() == 3, strings.Join(states, "; ")
	})
	// The old owner gave the head up: its later commits have nowhere to go.
	eventually(t, "A gives db up", func() (bool, string) {
		r := a.run(nil, "disk", "commit", "db")
		return r.code != 0, r.stdout + r.stderr
	})

	want := make([]byte, 8*mib)
	copy(want[:mib], bytes.Repeat([]byte{0x11}, mib))
	copy(want[mib:2*mib], bytes.Repeat([]byte{0x22}, mib))
	c.wantContent("db", want)

	var reps []api.ReplicaInfo
	a.jsonOut(&reps, "replica", "ls", "db")
	var fenced string
	for _, r := range reps {
		if strings.HasPrefix(r.Name, "fenced-e2-") {
			fenced = r.Name
		}
	}
	if fenced == "" {
		t.Fatalf("A kept no fenced replica of its diverging writes: %+v", reps)
	}
	old := make([]byte, 8*mib)
	copy(old[:mib], bytes.Repeat([]byte{0x11}, mib))
	copy(old[2*mib:3*mib], bytes.Repeat([]byte{0x33}, mib))
	eventually(t, "the fenced replica reaches the other side", func() (bool, string) {
		r := c.run(nil, "disk", "export", "db@"+fenced, filepath.Join(t.TempDir(), "x"))
		return r.code == 0, r.stderr
	})
	c.wantContent("db@"+fenced, old)
	if aID == bID {
		t.Fatal("A and B share a peer ID")
	}
}

// TestTakeStartsFromTheHeldRoot kills the owner of an async disk while the
// push of its newest root crawls over a capped link: the other nodes have
// merged the record naming that root, not all of its blocks. The take
// starts from the disk's held root, the newest one its placement sets
// confirmed in full, so the disk reads back whole on every node (taken at
// the newest root, it named blocks only the dead owner held: torture seed
// 21). The old owner, restarted, keeps its newer writes in a fenced
// replica: nothing acknowledged is lost.
func TestTakeStartsFromTheHeldRoot(t *testing.T) {
	needTool(t, "qemu-io", "qemu-utils")
	link := newNetnsLink(t)
	needTool(t, "tc", "iproute2")

	a := newHarness(t, filepath.Join(t.TempDir(), "a"))
	a.ok("init", "--site", "site-a", "--nbd", "off", "--listen", "/ip4/"+link.nsIP+"/tcp/0")
	a.netns, a.daemonArgs = link.ns, []string{"--heal-interval", healInterval}
	a.startDaemon()
	var others []*harness
	for _, site := range []string{"site-b", "site-c"} {
		h := newHarness(t, filepath.Join(t.TempDir(), site))
		h.ok("init", "--site", site, "--nbd", "off", "--listen", "/ip4/"+link.rootIP+"/tcp/0",
			"--cluster-secret-file", filepath.Join(a.home, "cluster.secret"))
		h.daemonArgs = []string{"--heal-interval", healInterval}
		h.startDaemon()
		h.ok("join", a.addr())
		others = append(others, h)
	}
	b, c := others[0], others[1]
	for _, h := range []*harness{a, b, c} {
		eventually(t, "three members alive", func() (bool, string) { n := h.alivePeers(); return n == 3, fmt.Sprint(n) })
	}

	const mib = 1 << 20
	a.ok("disk", "create", "db", "--size", "16M")
	a.nbdWrite("db", 0x11, 0, mib)
	a.ok("disk", "commit", "db")
	var r0 string
	eventually(t, "db's first root held in full", func() (bool, string) {
		d, why := b.tryDiskInfo("db")
		r0 = d.Root
		return d.Root != "" && d.HeldRoot == d.Root, fmt.Sprintf("%+v %s", d, why)
	})

	// A's uplink at 1 Mbit/s: the next push takes minutes, its record
	// (a few hundred bytes of gossip) seconds.
	toolOK(t, "ip", "netns", "exec", link.ns, "tc", "qdisc", "add", "dev", link.nsDev, "root",
		"tbf", "rate", "1mbit", "burst", "32kbit", "latency", "400ms")
	a.nbdWrite("db", 0x44, mib, 8*mib)
	a.ok("disk", "commit", "db")
	eventually(t, "B merged the newer root, not held yet", func() (bool, string) {
		d, why := b.tryDiskInfo("db")
		return d.Root != r0 && d.Root != "" && d.HeldRoot == r0, fmt.Sprintf("%+v %s", d, why)
	})
	a.killDaemon()
	eventually(t, "B sees A gone", func() (bool, string) { n := b.alivePeers(); return n == 2, fmt.Sprint(n) })
	b.ok("disk", "take", "db")
	if d := b.diskInfo("db"); d.Root != r0 || d.Epoch != 2 {
		t.Fatalf("taken at root %s epoch %d, want the held root %s at epoch 2", d.Root, d.Epoch, r0)
	}
	held := make([]byte, 16*mib)
	copy(held[:mib], bytes.Repeat([]byte{0x11}, mib))
	b.wantContent("db", held)
	c.wantContent("db", held)

	toolOK(t, "ip", "netns", "exec", link.ns, "tc", "qdisc", "del", "dev", link.nsDev, "root")
	a.startDaemon()
	var fenced string
	eventually(t, "A gives db up into a fenced replica", func() (bool, string) {
		var reps []api.ReplicaInfo
		if r := a.run(nil, "replica", "ls", "db", "--json"); r.code != 0 || json.Unmarshal([]byte(r.stdout), &reps) != nil {
			return false, r.stdout + r.stderr
		}
		for _, r := range reps {
			if strings.HasPrefix(r.Name, "fenced-e2-") {
				fenced = r.Name
			}
		}
		return fenced != "", fmt.Sprint(reps)
	})
	newer := bytes.Clone(held)
	copy(newer[mib:9*mib], bytes.Repeat([]byte{0x44}, 8*mib))
	a.wantContent("db@"+fenced, newer)
}
