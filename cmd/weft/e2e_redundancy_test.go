package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"github.com/weft-mesh/weft/api"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockmap"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/node"
)

// figure is one report of under-replicated blocks: what said it, the root
// it is about ("" when it cannot be tied to one), and the count (-1 when
// the report gave none).
type figure struct {
	what  string
	root  string
	under int64
}

// freeHTTPAddr returns a loopback address with a port free at the time of
// the call, for a dashboard (its config refuses port 0).
func freeHTTPAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// metricsUnder returns weft_heal_under_replicated_blocks from /metrics at
// addr, or -1 when the scrape does not have it.
func metricsUnder(t *testing.T, addr string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "weft_heal_under_replicated_blocks "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", sc.Text(), err)
			}
			return int64(n)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	return -1
}

// redundancyFigures reads every report of disk's redundancy on h: disk
// info, status, /metrics at metricsAddr and disk ls, in that order. Status
// and the metrics sum over the disks and name no root: they are tied to
// the disk's root when disk info and disk ls, read before and after them,
// name the same one.
func (h *harness) redundancyFigures(disk, metricsAddr string) []figure {
	h.t.Helper()
	name := filepath.Base(h.home)
	info, _ := h.tryDiskInfo(disk)
	st := h.status()
	m := metricsUnder(h.t, metricsAddr)
	var ls []api.DiskInfo
	h.jsonOut(&ls, "disk", "ls")
	listed := figure{what: name + " disk ls", under: -1}
	for _, d := range ls {
		if d.Name == disk {
			listed.root, listed.under = d.Root, d.UnderReplicated
		}
	}
	tied := ""
	if info.Root == listed.root {
		tied = info.Root
	}
	return []figure{
		{what: name + " disk info", root: info.Root, under: info.UnderReplicated},
		{what: name + " status", root: tied, under: st.UnderReplicated},
		{what: name + " metrics", root: tied, under: m},
		listed,
	}
}

// missingBlocks counts the blocks of root the (stopped) node's store lacks.
func missingBlocks(t *testing.T, h *harness, root cid.Cid) (missing, total int) {
	t.Helper()
	s, err := blockstore.Open(filepath.Join(h.home, node.BlocksDir), blockstore.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	err = blockmap.New(s, 64).Mark(ctx, root, func(c cid.Cid) bool {
		total++
		ok, err := s.Has(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			missing++
		}
		return true
	})
	if err != nil {
		t.Fatalf("walk %s in %s's store: %v", root, filepath.Base(h.home), err)
	}
	return missing, total
}

// TestRedundancyNeverClaimedEarly: while a 48 MiB disk with R=2 is
// imported and replicated between two nodes, no report (disk info, disk
// ls, status, /metrics, on either node) says 0 under-replicated before
// both nodes hold every block: at the first 0 the owner is killed, as an
// operator trusting the figure would, and the other node's store must hold
// the whole disk. With the owner gone the figure rises again; with both
// back every report ends at 0, and they agree.
func TestRedundancyNeverClaimedEarly(t *testing.T) {
	metrics := map[string]string{"site-a": freeHTTPAddr(t), "site-b": freeHTTPAddr(t)}
	a := meshMember(t, "site-a", "127.0.0.1", "", "--http", metrics["site-a"])
	b := meshMember(t, "site-b", "127.0.0.2", a.home, "--http", metrics["site-b"])
	b.ok("join", a.addr())
	for _, h := range []*harness{a, b} {
		eventually(t, "two members alive on "+filepath.Base(h.home), func() (bool, string) {
			n := h.alivePeers()
			return n == 2, fmt.Sprint(n, " alive")
		})
	}

	img := make([]byte, 48<<20)
	rng := rand.New(rand.NewChaCha8([32]byte{10}))
	for i := range img {
		img[i] = byte(rng.Uint32())
	}
	path := writeTemp(t, "vm.img", img)
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	imp := exec.CommandContext(ctx, a.bin, "--home", a.home, "disk", "import", "vm", path, "--replicas", "2")
	imp.Env = append(os.Environ(), "WEFT_HOME=")
	imp.Stdout, imp.Stderr = io.Discard, io.Discard
	if err := imp.Start(); err != nil {
		t.Fatal(err)
	}
	imported := make(chan error, 1)
	go func() { imported <- imp.Wait() }()
	importDone := false

	// Sample until a report says 0 for the disk's root.
	var zero figure
	deadline := time.Now().Add(meshTimeout)
	samples := 0
	for zero.what == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no report said 0 under-replicated within %v (%d samples)", meshTimeout, samples)
		}
		select {
		case err := <-imported:
			if err != nil {
				t.Fatalf("disk import: %v", err)
			}
			importDone = true
		default:
		}
		for _, h := range []*harness{a, b} {
			for _, f := range h.redundancyFigures("vm", metrics[filepath.Base(h.home)]) {
				samples++
				if f.under == 0 && f.root != "" && zero.what == "" {
					zero = f
				}
			}
		}
	}
	a.killDaemon()
	if !importDone {
		<-imported // cut short by the kill, or done meanwhile
	}
	t.Logf("first 0: %+v after %d samples; owner killed", zero, samples)
	root, err := cid.Decode(zero.root)
	if err != nil {
		t.Fatal(err)
	}

	// B, alone, must not call the disk replicated any more.
	eventually(t, "B counts vm under-replicated without A", func() (bool, string) {
		d, why := b.tryDiskInfo("vm")
		return why == "" && d.Root == zero.root && d.UnderReplicated > 0, fmt.Sprintf("%+v %s", d, why)
	})
	b.stopDaemon()
	for _, h := range []*harness{a, b} {
		if missing, total := missingBlocks(t, h, root); missing > 0 {
			t.Fatalf("%s said 0 under-replicated for %s, but %s's store lacks %d of its %d blocks",
				zero.what, root, filepath.Base(h.home), missing, total)
		}
	}

	a.startDaemon()
	b.startDaemon()
	b.ok("join", a.addr()) // both listen on new ports
	for _, h := range []*harness{a, b} {
		eventually(t, "two members alive again on "+filepath.Base(h.home), func() (bool, string) {
			n := h.alivePeers()
			return n == 2, fmt.Sprint(n, " alive")
		})
	}
	eventually(t, "every report at 0 on both nodes, about the same root", func() (bool, string) {
		var all []figure
		for _, h := range []*harness{a, b} {
			all = append(all, h.redundancyFigures("vm", metrics[filepath.Base(h.home)])...)
		}
		for _, f := range all {
			if f.under != 0 || f.root == "" || f.root != all[0].root {
				return false, fmt.Sprintf("%+v", all)
			}
		}
		return true, ""
	})
}

// TestRedundancyFiguresAgree: status's under_replicated is the sum of what
// disk ls lists, and disk info gives each disk's figure, from one account.
func TestRedundancyFiguresAgree(t *testing.T) {
	a := meshMember(t, "site-a", "127.0.0.1", "")
	img := make([]byte, 4<<20)
	rng := rand.New(rand.NewChaCha8([32]byte{11}))
	for i := range img {
		img[i] = byte(rng.Uint32())
	}
	a.ok("disk", "import", "one", writeTemp(t, "one.img", img), "--replicas", "2")
	a.ok("disk", "import", "two", writeTemp(t, "two.img", img[:1<<20]), "--replicas", "2")
	// One node cannot hold two copies: both disks stay under-replicated,
	// every block of them, and the figures add up.
	var ls []api.DiskInfo
	a.jsonOut(&ls, "disk", "ls")
	var sum int64
	for _, d := range ls {
		info := a.diskInfo(d.Name)
		if d.UnderReplicated != info.UnderReplicated || d.UnderReplicated < d.UsedBytes/d.BlockSize {
			t.Fatalf("disk %s: disk ls says %d under-replicated, disk info %d; want the same, at least its %d data blocks",
				d.Name, d.UnderReplicated, info.UnderReplicated, d.UsedBytes/d.BlockSize)
		}
		sum += d.UnderReplicated
	}
	if st := a.status(); st.UnderReplicated != sum || sum == 0 {
		b, _ := json.Marshal(ls)
		t.Fatalf("status says %d under-replicated, want the sum over disk ls, %d (non-zero): %s", st.UnderReplicated, sum, b)
	}
}
