package main

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// cappedRate is the tbf rate of the link TestDetectorCappedTCPLink fills.
const cappedRate = "20mbit"

// TestDetectorCappedTCPLink: A, in a network namespace, talks TCP only to B
// and C over a link capped by tbf each way (50 ms queue). While busy loops
// saturate every CPU and A pushes a disk to B and C, A's uplink is full of
// block data for tens of seconds; the gossip that shares those TCP
// connections must still get through in time: no member is ever listed
// dead anywhere until the disk is fully replicated.
func TestDetectorCappedTCPLink(t *testing.T) {
	link := newNetnsLink(t)
	needTool(t, "tc", "iproute2")
	for _, dev := range []struct{ ns, name string }{{"", link.rootDev}, {link.ns, link.nsDev}} {
		args := []string{"tc", "qdisc", "add", "dev", dev.name, "root", "tbf", "rate", cappedRate, "burst", "64kb", "latency", "50ms"}
		if dev.ns != "" {
			args = append([]string{"ip", "netns", "exec", dev.ns}, args...)
		}
		toolOK(t, args[0], args[1:]...)
	}

	a := newHarness(t, filepath.Join(t.TempDir(), "a"))
	a.ok("init", "--site", "site-a", "--nbd", "off", "--listen", "/ip4/"+link.nsIP+"/tcp/0")
	a.netns, a.daemonArgs = link.ns, []string{"--heal-interval", healInterval}
	a.startDaemon()
	b := meshMember(t, "site-b", link.rootIP, a.home)
	c := meshMember(t, "site-c", link.rootIP, a.home)
	b.ok("join", a.addr())
	c.ok("join", a.addr())
	all := []*harness{a, b, c}
	for _, h := range all {
		eventually(t, "three members alive on "+filepath.Base(h.home), func() (bool, string) {
			n := h.alivePeers()
			return n == 3, fmt.Sprint(n, " alive")
		})
	}

	ctx, stop := context.WithCancel(context.Background())
	var spinners sync.WaitGroup
	defer func() { stop(); spinners.Wait() }()
	for range 2 * runtime.NumCPU() {
		spinners.Add(1)
		go func() {
			defer spinners.Done()
			for n := 0; ctx.Err() == nil; n++ {
				for range 1 << 16 {
					n ^= n << 1
				}
			}
		}()
	}
	// 32 MiB to each of B and C: about 27 s of a full uplink.
	img := writeTemp(t, "capped.img", smallImage(t, 15, 32<<20))
	a.ok("disk", "import", "vm", img, "--replicas", "3")
	a.ok("disk", "commit", "vm")
	eventually(t, "vm fully replicated, every member alive throughout", func() (bool, string) {
		for _, h := range all {
			for _, p := range h.peers() {
				if p.State != "alive" {
					t.Fatalf("while A pushes over its capped TCP link %s lists %s %s, want every member alive",
						filepath.Base(h.home), p.PeerID, p.State)
				}
			}
		}
		d := a.diskInfo("vm")
		return d.UnderReplicated == 0, fmt.Sprint(d.UnderReplicated, " blocks under-replicated")
	})
}
