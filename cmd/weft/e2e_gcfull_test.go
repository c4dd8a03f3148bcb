package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/node"
)

// TestGCOnFullNode: B, a mesh member on a small tmpfs home, holds the
// blocks of a disk it then removes, another program fills its file system
// below the store's floor, and A imports a disk B cannot store, so B's
// catalog names a live root whose map nodes are only on A. weft gc on B
// must still succeed and give the removed disk's space back: its mark
// reads A's map nodes without keeping them, its sweep needs no room.
func TestGCOnFullNode(t *testing.T) {
	a := meshMember(t, "site-a", "127.0.0.1", "")
	broot := mountTmpfs(t, "256m")
	b := newHarness(t, filepath.Join(broot, "home"))
	b.ok("init", "--site", "site-b", "--nbd", "off", "--listen", "/ip4/127.0.0.2/tcp/0",
		"--cluster-secret-file", filepath.Join(a.home, node.ClusterSecretFile))
	b.daemonArgs = []string{"--heal-interval", healInterval, "--reserve", "64M", "--join", a.addr()}
	b.startDaemon()
	eventually(t, "two members", func() (bool, string) { n := a.alivePeers(); return n == 2, fmt.Sprint(n) })

	// A disk of B's own, then removed: its blocks on B are garbage.
	own := make([]byte, 96<<20)
	rand.NewChaCha8([32]byte{21}).Read(own)
	b.ok("disk", "import", "own", writeTemp(t, "own.img", own), "--replicas", "1")
	b.ok("disk", "rm", "own")

	// Another program leaves B less than the store's floor free.
	fill := filler{t: t, path: filepath.Join(broot, "filler")}
	fill.fill(16 << 20)
	if st := b.status().Space; st.State != api.SpaceFull {
		t.Fatalf("B's space with 16 MiB free: %+v, want full", st)
	}
	// A's disk: B refuses its blocks, map nodes included, for space.
	big := make([]byte, 8<<20)
	rand.NewChaCha8([32]byte{22}).Read(big)
	a.ok("disk", "import", "big", writeTemp(t, "big.img", big))
	eventually(t, "B knows A's disk", func() (bool, string) {
		r := b.run(nil, "disk", "info", "big")
		return r.code == 0, r.stderr
	})

	before := freeOn(t, fill.path)
	var st api.GCStats
	b.jsonOut(&st, "gc")
	after := freeOn(t, fill.path)
	t.Logf("gc on B: %+v; free %d MiB before, %d MiB after", st, before>>20, after>>20)
	if st.SweptBytes < 64<<20 || after-before < 64<<20 {
		t.Fatalf("gc on a full B: swept %d bytes, free went from %d to %d; want the removed disk's ~96 MiB back", st.SweptBytes, before, after)
	}
	if out := b.ok("status"); strings.Contains(out, "DEVICE FULL") {
		t.Fatalf("weft status on B after gc still says the device is full:\n%s", out)
	}
	b.wantContent("big", big)
	a.wantContent("big", big)
}

// TestScrubDeletesCorruptGarbage: a corrupt block no live root reaches
// (the blocks of a removed disk, which gc has not collected yet) is
// garbage: scrub deletes it instead of reporting it unrepairable. A
// corrupt block of a live disk with no other copy stays reported.
func TestScrubDeletesCorruptGarbage(t *testing.T) {
	h := newHarness(t, filepath.Join(t.TempDir(), "home"))
	h.ok("init", "--nbd", "off")
	h.startDaemon()
	gone, kept := make([]byte, 4*blockSize), make([]byte, 4*blockSize)
	rand.NewChaCha8([32]byte{31}).Read(gone)
	rand.NewChaCha8([32]byte{32}).Read(kept)
	h.ok("disk", "import", "gone", writeTemp(t, "gone.img", gone))
	h.ok("disk", "import", "kept", writeTemp(t, "kept.img", kept))
	h.ok("disk", "rm", "gone")
	h.stopDaemon()
	garbage := blockstore.Sum(blockstore.CodecRaw, gone[:blockSize])
	live := blockstore.Sum(blockstore.CodecRaw, kept[:blockSize])
	corruptBlock(t, filepath.Join(h.home, node.BlocksDir), garbage)
	corruptBlock(t, filepath.Join(h.home, node.BlocksDir), live)
	h.startDaemon()

	var res api.ScrubResult
	r := h.run(nil, "scrub", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("scrub --json: %v: %q %q", err, r.stdout, r.stderr)
	}
	byCID := make(map[string]api.CorruptBlock)
	for _, c := range res.Corrupt {
		byCID[c.CID] = c
	}
	if c := byCID[garbage.String()]; !c.Dropped || c.Repaired {
		t.Fatalf("scrub of a corrupt garbage block: %+v, want it dropped", c)
	}
	if c, ok := byCID[live.String()]; !ok || c.Dropped || c.Repaired {
		t.Fatalf("scrub of a corrupt live block with no other copy: %+v, want it reported, not dropped", c)
	}
	if r.code == 0 || !strings.Contains(r.stderr, "1 corrupt block") {
		t.Fatalf("scrub: exit %d, stderr %q; want exit 1 for the live block only", r.code, r.stderr)
	}
	out := h.run(nil, "scrub")
	if strings.Contains(out.stdout, garbage.String()) || !strings.Contains(out.stdout, live.String()) {
		t.Fatalf("second scrub: %q; want only the live block still corrupt", out.stdout)
	}
}
