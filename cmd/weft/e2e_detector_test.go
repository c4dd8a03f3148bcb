package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/weft-mesh/weft/node"
)

// loadFor is how long TestDetectorUnderLoad keeps the CPUs saturated: long
// enough for several suspicion timeouts (2 s each), short enough not to
// starve the other packages' tests that `make test` runs beside it.
const loadFor = 12 * time.Second

// TestDetectorUnderLoad: three daemons with the default failure detector;
// while busy loops saturate every CPU and A imports a disk that it pushes
// to B and C (hashing, encrypting, writing), no member is ever listed dead
// anywhere; once the load stops, C is killed -9 and A and B list it dead.
func TestDetectorUnderLoad(t *testing.T) {
	a := meshMember(t, "site-a", "127.0.0.1", "")
	b := meshMember(t, "site-b", "127.0.0.2", a.home)
	c := meshMember(t, "site-c", "127.0.0.3", a.home)
	b.ok("join", a.addr())
	c.ok("join", a.addr())
	all := []*harness{a, b, c}
	for _, h := range all {
		eventually(t, "three members alive on "+filepath.Base(h.home), func() (bool, string) {
			n := h.alivePeers()
			return n == 3, fmt.Sprint(n, " alive")
		})
	}

	ctx, stop := context.WithTimeout(context.Background(), loadFor)
	defer stop()
	var spinners sync.WaitGroup
	for range runtime.NumCPU() {
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
	img := writeTemp(t, "load.img", smallImage(t, 14, 64<<20))
	importDone := make(chan result, 1)
	go func() { importDone <- a.run(nil, "disk", "import", "vm", img, "--replicas", "3") }()
	for polls := 0; ctx.Err() == nil || polls == 0; polls++ {
		for _, h := range all {
			for _, p := range h.peers() {
				if p.State != "alive" {
					t.Fatalf("under load %s lists %s %s, want every member alive", filepath.Base(h.home), p.PeerID, p.State)
				}
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	spinners.Wait()
	if r := <-importDone; r.code != 0 {
		t.Fatalf("disk import under load: exit %d: %s", r.code, r.stderr)
	}

	c.killDaemon()
	for _, h := range []*harness{a, b} {
		eventually(t, "c listed dead on "+filepath.Base(h.home), func() (bool, string) {
			for _, p := range h.peers() {
				if p.State == "dead" {
					return true, ""
				}
			}
			return false, fmt.Sprint(h.alivePeers(), " alive")
		})
	}
}

// TestNoFalseDeathOverTCPUnderLoad: three daemons that talk TCP only, each
// in a network namespace whose links tbf caps at 10 Mbit/s; while A pushes
// a disk of random data to B and C, its uplink full until both hold every
// block (they relay to each other too), no member is ever listed dead, nor
// logs one as failed. Over TCP every stream to a member shares one
// connection, and gossip and probes waited behind up to 1 MiB of block
// data queued in yamux, about 2 s on a 5 Mbit/s share of a link: a busy,
// live member was declared dead. Then C is killed -9 and A and B list it
// dead. The CPUs are left alone: the full links alone did it.
func TestNoFalseDeathOverTCPUnderLoad(t *testing.T) {
	namespaces, ips := bridgedSites(t, 3, 10)
	const size = 16 << 20 // about 15 s of A's 10 Mbit/s uplink
	members := make([]*harness, len(ips))
	for i, ip := range ips {
		h := newHarness(t, filepath.Join(t.TempDir(), fmt.Sprintf("m%d", i)))
		args := []string{"init", "--site", fmt.Sprintf("m%d", i), "--nbd", "off", "--listen", "/ip4/" + ip + "/tcp/4001"}
		if i > 0 {
			args = append(args, "--cluster-secret-file", filepath.Join(members[0].home, node.ClusterSecretFile))
		}
		h.ok(args...)
		h.netns = namespaces[i]
		h.startDaemon()
		members[i] = h
	}
	a, c := members[0], members[2]
	for _, h := range members[1:] {
		h.ok("join", a.addr())
	}
	for _, h := range members {
		eventually(t, "three members alive on "+filepath.Base(h.home), func() (bool, string) {
			n := h.alivePeers()
			return n == 3, fmt.Sprint(n, " alive")
		})
	}

	a.ok("disk", "import", "vm", writeTemp(t, "load.img", smallImage(t, 17, size)), "--replicas", "3")
	a.ok("disk", "commit", "vm") // pushes the disk to B and C now
	deadline := time.Now().Add(cmdTimeout)
	for replicated := false; !replicated; {
		if time.Now().After(deadline) {
			t.Fatalf("vm not replicated within %v", cmdTimeout)
		}
		for _, h := range members {
			for _, p := range h.peers() {
				if p.State == "dead" {
					t.Fatalf("under load %s lists %s dead, want every member alive", filepath.Base(h.home), p.PeerID)
				}
			}
		}
		d, _ := a.tryDiskInfo("vm")
		replicated = d.UnderReplicated == 0
		time.Sleep(250 * time.Millisecond)
	}
	for _, h := range members {
		for _, name := range h.daemonLogs {
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			if n := bytes.Count(b, []byte("as failed, suspect timeout")); n > 0 {
				t.Fatalf("%s logged %d members as failed under load, want none", filepath.Base(h.home), n)
			}
		}
	}

	c.killDaemon()
	for _, h := range members[:2] {
		eventually(t, "c listed dead on "+filepath.Base(h.home), func() (bool, string) {
			for _, p := range h.peers() {
				if p.State == "dead" {
					return true, ""
				}
			}
			return false, fmt.Sprint(h.alivePeers(), " alive")
		})
	}
}
