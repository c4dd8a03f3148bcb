package main

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
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
