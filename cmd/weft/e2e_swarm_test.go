package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/weft-mesh/weft/node"
)

// bridgedCalls counts the calls of bridgedSites in this process.
var bridgedCalls atomic.Int64

// bridgedSites builds n network namespaces on one bridge, each with a veth
// whose ends are both capped at mbit Mbit/s by tbf: n sites whose links
// are slower than the machine. It returns the namespaces and their
// addresses, which exist only inside them.
func bridgedSites(t *testing.T, n, mbit int) (namespaces, ips []string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("swarm test on capped links needs root for network namespaces and tc")
	}
	needTool(t, "ip", "iproute2")
	needTool(t, "tc", "iproute2")
	// The pid and a count: a test's veths outlive their namespaces a while.
	id := (os.Getpid()%1000)*10 + int(bridgedCalls.Add(1)%10)
	br := fmt.Sprintf("wsw%db", id)
	t.Cleanup(func() { tool(t, cmdTimeout, "ip", "link", "del", br) })
	toolOK(t, "ip", "link", "add", br, "type", "bridge")
	toolOK(t, "ip", "link", "set", br, "up")
	if _, err := exec.LookPath("iptables"); err == nil {
		// dockerd's FORWARD policy DROP would meet the bridged frames.
		toolOK(t, "iptables", "-I", "FORWARD", "-i", br, "-o", br, "-j", "ACCEPT")
		t.Cleanup(func() { tool(t, cmdTimeout, "iptables", "-D", "FORWARD", "-i", br, "-o", br, "-j", "ACCEPT") })
	}
	rate := fmt.Sprintf("%dmbit", mbit)
	for i := range n {
		ns := fmt.Sprintf("weft-sw-%d-%d", id, i)
		host, inner := fmt.Sprintf("wsw%dh%d", id, i), fmt.Sprintf("wsw%dn%d", id, i)
		ip := fmt.Sprintf("10.233.%d.%d", id%250, 10+i)
		t.Cleanup(func() { tool(t, cmdTimeout, "ip", "netns", "del", ns) })
		toolOK(t, "ip", "netns", "add", ns)
		toolOK(t, "ip", "link", "add", host, "type", "veth", "peer", "name", inner)
		// Deleted at once: the namespace's deletion frees its end (and so
		// the pair) later, and a test run again would find the name taken.
		t.Cleanup(func() { tool(t, cmdTimeout, "ip", "link", "del", host) })
		toolOK(t, "ip", "link", "set", inner, "netns", ns)
		toolOK(t, "ip", "link", "set", host, "master", br, "up")
		toolOK(t, "ip", "-n", ns, "addr", "add", ip+"/24", "dev", inner)
		toolOK(t, "ip", "-n", ns, "link", "set", inner, "up")
		toolOK(t, "ip", "-n", ns, "link", "set", "lo", "up")
		toolOK(t, "tc", "qdisc", "add", "dev", host, "root", "tbf", "rate", rate, "burst", "64kb", "latency", "50ms")
		toolOK(t, "ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", inner, "root", "tbf", "rate", rate, "burst", "64kb", "latency", "50ms")
		namespaces, ips = append(namespaces, ns), append(ips, ip)
	}
	return namespaces, ips
}

// goldSites starts an origin and n-1 sites on capped links (bridgedSites,
// mbit Mbit/s), the origin holding the disk gold-disk and its spacesuit
// gold@1 (a disk and a spacesuit cannot share a name) of size random
// bytes, and waits until all are members. The origin imports and
// publishes before the sites join, so its replication push finds no other
// member; the sites' heal is all but stopped (1K/s, a 256 KiB burst), so
// the transfer under test moves nearly every block.
func goldSites(t *testing.T, n, mbit, size int) []*harness {
	t.Helper()
	namespaces, ips := bridgedSites(t, n, mbit)
	img := make([]byte, size)
	rand.NewChaCha8([32]byte{14}).Read(img)
	sites := make([]*harness, len(ips))
	for i, ip := range ips {
		h := newHarness(t, filepath.Join(t.TempDir(), fmt.Sprintf("s%d", i)))
		args := []string{"init", "--site", fmt.Sprintf("s%d", i), "--nbd", "off", "--listen", "/ip4/" + ip + "/tcp/0"}
		if i > 0 {
			args = append(args, "--cluster-secret-file", filepath.Join(sites[0].home, node.ClusterSecretFile))
			h.daemonArgs = []string{"--heal-bandwidth", "1K"}
		}
		h.ok(args...)
		h.netns = namespaces[i]
		sites[i] = h
	}
	origin := sites[0]
	origin.startDaemon()
	origin.ok("disk", "import", "gold-disk", writeTemp(t, "gold.img", img), "--replicas", "1")
	origin.ok("spacesuit", "publish", "gold", "gold-disk")
	for _, h := range sites[1:] {
		h.startDaemon()
		h.ok("join", origin.addr())
	}
	for _, h := range sites {
		eventually(t, fmt.Sprint(n, " members"), func() (bool, string) { m := h.alivePeers(); return m == n, fmt.Sprint(m) })
	}
	return sites
}

// TestPushSwarmsOnCappedLinks pushes a spacesuit from an origin to three
// sites, every link capped at 20 Mbit/s each way: the origin sends about
// one copy in all, and every site gets blocks from the other sites.
func TestPushSwarmsOnCappedLinks(t *testing.T) {
	const size = 8 << 20
	sites := goldSites(t, 4, 20, size)
	origin := sites[0]

	var tr node.TransferInfo
	origin.jsonOut(&tr, "push", "gold@1", "--to", "s1,s2,s3")
	if tr.State != "done" || len(tr.Targets) != 3 {
		t.Fatalf("push: %+v", tr)
	}
	originID := origin.peerID()
	var fromOrigin int64
	for _, tp := range tr.Targets {
		t.Logf("%s: %v (skipped %d blocks held before)", tp.Target, tp.BytesFrom, tp.Skipped)
		if tp.State != "done" || tp.Bytes != tp.Total || tp.Total < size*3/4 {
			t.Fatalf("target %+v: want done, having received most of the %d bytes", tp, size)
		}
		fromOrigin += tp.BytesFrom[originID]
		if others := tp.Bytes - tp.BytesFrom[originID]; others == 0 {
			t.Errorf("%s got nothing from the other sites", tp.Target)
		}
	}
	if copies := float64(fromOrigin) / size; copies > 1.1 {
		t.Fatalf("the origin sent %.2f copies, want at most 1.1", copies)
	}
}
