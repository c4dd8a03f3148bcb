package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/weft-mesh/weft/api"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/blockstore/storetest"
	"github.com/weft-mesh/weft/node"
)

const blockSize = api.DefaultBlockSize

// testImage returns a disk image of random data with holes: a run of
// blocks, a hole, a lone block, a partly written block, and a tail that
// does not end on a block boundary. At 40 MiB it needs a block map of more
// than one level.
func testImage(t *testing.T, seed uint64) []byte {
	t.Helper()
	t.Logf("image seed %d", seed)
	rng := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1}))
	img := make([]byte, 40<<20+12345)
	fill := func(off, n int) {
		for i := off; i < off+n; i++ {
			img[i] = byte(rng.Uint32())
		}
	}
	fill(0, 1<<20)                 // 16 full blocks
	fill(3<<20, blockSize)         // one block after a 2 MiB hole
	fill(3<<20+blockSize*3+7, 100) // part of a block
	fill(len(img)-5000, 5000)      // the unaligned tail
	return img
}

// padTo returns img padded with zeros to a multiple of bs.
func padTo(img []byte, bs int) []byte {
	n := (len(img) + bs - 1) / bs * bs
	return append(append([]byte(nil), img...), make([]byte, n-len(img))...)
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// export exports ref to a file and returns its content.
func (h *harness) export(ref string) []byte {
	h.t.Helper()
	p := filepath.Join(h.t.TempDir(), "export.img")
	h.ok("disk", "export", ref, p)
	b, err := os.ReadFile(p)
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

// wantContent checks that ref exports exactly want.
func (h *harness) wantContent(ref string, want []byte) {
	h.t.Helper()
	got := h.export(ref)
	if !bytes.Equal(got, want) {
		h.t.Fatalf("export %s: %d bytes differing from the %d expected (first difference at %d)", ref, len(got), len(want), firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func (h *harness) jsonOut(v any, args ...string) {
	h.t.Helper()
	out := h.ok(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		h.t.Fatalf("weft %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (h *harness) status() node.Status {
	h.t.Helper()
	var st node.Status
	h.jsonOut(&st, "status")
	return st
}

// TestCLI drives every command of the CLI contract through the real binary
// and a real daemon.
func TestCLI(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	h := newHarness(t, home)

	// init, and its refusals.
	h.fails("listen", "init", "--listen", "not-a-multiaddr")
	h.fails("nbd", "init", "--nbd", "localhost")
	h.fails("site", "init", "--site", "bad site")
	// The defaults, in a home no daemon runs on (other test packages run
	// at the same time, so a daemon here must not take the default ports).
	// (Run directly: the harness adds test addresses to every init.)
	defHome := filepath.Join(t.TempDir(), "defaults")
	if out, err := exec.Command(weftBinary(t), "--home", defHome, "init").CombinedOutput(); err != nil {
		t.Fatalf("init with defaults: %v\n%s", err, out)
	}
	if cfg, err := node.Load(defHome); err != nil || cfg.Site != "default" || cfg.NBD != "127.0.0.1:10809" || cfg.HTTP != "127.0.0.1:7070" ||
		len(cfg.Listen) != 2 {
		t.Fatalf("default config after init = %+v, %v", cfg, err)
	}
	nbdAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	out := h.ok("init", "--site", "lab", "--nbd", nbdAddr, "--listen", "/ip4/127.0.0.1/tcp/0", "--listen", "/ip4/127.0.0.1/udp/0/quic-v1")
	if !strings.Contains(out, home) {
		t.Errorf("init output %q does not name the home %s", out, home)
	}
	h.fails("already initialized", "init")
	if fi, err := os.Stat(filepath.Join(home, node.IdentityFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity key: %v, %v; want mode 0600", fi, err)
	}
	cfg, err := node.Load(home)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Site != "lab" || len(cfg.Listen) != 2 || cfg.NBD != nbdAddr {
		t.Fatalf("config after init = %+v", cfg)
	}

	// No daemon yet.
	h.fails("no daemon running at "+home+" (start it with: weft daemon --home "+home+")", "disk", "ls")

	h.startDaemon()
	h.fails("in use by another weft daemon", "daemon")
	if fi, err := os.Stat(filepath.Join(home, node.SocketFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v, %v; want mode 0600", fi, err)
	}
	st := h.status()
	if st.Site != "lab" || st.Home != home || st.Disks != 0 {
		t.Fatalf("status = %+v", st)
	}

	// create, and an empty 1 TiB disk exports sparsely.
	h.ok("disk", "create", "empty", "--size", "1T")
	h.ok("disk", "create", "small", "--size", "32M", "--block-size", "4K", "--replicas", "3")
	var small api.DiskInfo
	h.jsonOut(&small, "disk", "info", "small")
	if small.Size != 32<<20 || small.BlockSize != 4<<10 || small.Replicas != 3 {
		t.Fatalf("disk info small = %+v", small)
	}
	big := filepath.Join(t.TempDir(), "empty.img")
	h.ok("disk", "export", "empty", big)
	if fi, err := os.Stat(big); err != nil || fi.Size() != 1<<40 {
		t.Fatalf("export of a 1 TiB disk: %v, %v", fi, err)
	} else if used := fi.Sys().(*syscall.Stat_t).Blocks * 512; used > 1<<20 {
		t.Fatalf("export of an empty 1 TiB disk uses %d bytes, want a sparse file", used)
	}
	os.Remove(big)

	// import a file with holes; export to a file and to stdout.
	imgA := testImage(t, 1)
	wantA := padTo(imgA, blockSize)
	h.ok("disk", "import", "web", writeTemp(t, "a.img", imgA))
	h.wantContent("web", wantA)
	r := h.run(nil, "disk", "export", "web", "-")
	if r.code != 0 || !bytes.Equal([]byte(r.stdout), wantA) {
		t.Fatalf("export web -: exit %d, %d bytes, want %d bytes equal to the image; stderr %s", r.code, len(r.stdout), len(wantA), r.stderr)
	}

	// The same image from stdin (streamed through the socket rather than
	// read by the daemon) gives the same disk, down to the root CID.
	if r := h.run(imgA, "disk", "import", "web-stdin", "-"); r.code != 0 {
		t.Fatalf("import from stdin: exit %d, stderr %s", r.code, r.stderr)
	}
	h.wantContent("web-stdin", wantA)
	var fromFile, fromStdin api.DiskInfo
	h.jsonOut(&fromFile, "disk", "info", "web")
	h.jsonOut(&fromStdin, "disk", "info", "web-stdin")
	if fromFile.Root != fromStdin.Root || fromFile.Root == "" {
		t.Fatalf("root from a file %q, from stdin %q: want equal and non-empty", fromFile.Root, fromStdin.Root)
	}
	h.ok("disk", "rm", "web-stdin")

	// info --json has the contract's fields.
	var fields map[string]any
	h.jsonOut(&fields, "disk", "info", "web")
	for _, k := range []string{"name", "size", "block_size", "replicas", "root", "used_bytes", "under_replicated"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("disk info --json has no %q: %v", k, fields)
		}
	}
	var web api.DiskInfo
	h.jsonOut(&web, "disk", "info", "web")
	if web.Name != "web" || web.Size != int64(len(wantA)) || web.BlockSize != blockSize || web.Root == "" {
		t.Fatalf("disk info web = %+v", web)
	}
	if wantUsed := int64(16+1+1+1) * blockSize; web.UsedBytes != wantUsed {
		t.Errorf("web used_bytes = %d, want %d (zero blocks are not stored)", web.UsedBytes, wantUsed)
	}
	var disks []api.DiskInfo
	h.jsonOut(&disks, "disk", "ls")
	if len(disks) != 3 || disks[0].Name != "empty" || disks[1].Name != "small" || disks[2].Name != "web" {
		t.Fatalf("disk ls --json = %+v, want empty, small, web", disks)
	}
	if out := h.ok("disk", "ls"); !strings.Contains(out, "NAME") || !strings.Contains(out, "1 TiB") {
		t.Errorf("disk ls:\n%s", out)
	}

	// A replica keeps the old content while the disk changes.
	h.ok("replica", "create", "web", "r1")
	imgB := testImage(t, 2)
	wantB := padTo(imgB, blockSize)
	h.ok("disk", "import", "web", writeTemp(t, "b.img", imgB))
	h.wantContent("web", wantB)
	h.wantContent("web@r1", wantA)

	// Time travel: restore keeps the unsaved head as a backup replica.
	out = h.ok("replica", "restore", "web", "r1")
	h.wantContent("web", wantA)
	var reps []api.ReplicaInfo
	h.jsonOut(&reps, "replica", "ls", "web")
	if len(reps) != 2 || reps[0].Name != "r1" {
		t.Fatalf("replica ls after restore = %+v, want r1 and a backup", reps)
	}
	backup := reps[1].Name
	if !strings.Contains(out, backup) {
		t.Errorf("restore output %q does not name the backup replica %s", out, backup)
	}
	h.wantContent("web@"+backup, wantB)

	// Clones from a replica and from a disk.
	h.ok("disk", "clone", "web@r1", "c1")
	h.ok("disk", "clone", "web@"+backup, "c2")
	h.ok("disk", "clone", "web", "c3")
	h.wantContent("c1", wantA)
	h.wantContent("c2", wantB)
	h.wantContent("c3", wantA)

	// Removing the disk leaves its replicas whole.
	h.ok("disk", "rm", "web")
	h.fails("not found", "disk", "info", "web")
	h.wantContent("web@r1", wantA)
	h.jsonOut(&reps, "replica", "ls", "web")
	if len(reps) != 2 {
		t.Fatalf("replica ls of a removed disk = %+v, want 2 replicas", reps)
	}

	// GC keeps everything reachable and reclaims what is not: B lives only
	// in the backup replica and c2.
	h.ok("gc")
	before := h.status()
	h.ok("replica", "rm", "web", backup)
	h.ok("disk", "rm", "c2")
	var gc api.GCStats
	h.jsonOut(&gc, "gc")
	after := h.status()
	if gc.SweptBlocks == 0 || after.Bytes >= before.Bytes {
		t.Fatalf("gc after removing B: swept %d blocks, store bytes %d -> %d; want some swept and fewer bytes", gc.SweptBlocks, before.Bytes, after.Bytes)
	}
	h.wantContent("web@r1", wantA)
	h.wantContent("c1", wantA)
	h.wantContent("c3", wantA)
	if out := h.ok("scrub"); !strings.Contains(out, "0 corrupt") {
		t.Errorf("scrub of a clean store: %q", out)
	}

	// Errors: one line, non-zero exit.
	h.fails(`"nope"`, "disk", "info", "nope")
	h.fails(`"nope"`, "disk", "rm", "nope")
	xpath := filepath.Join(t.TempDir(), "x.img")
	h.fails(`"nope"`, "disk", "export", "nope", xpath)
	h.fails(`"gone"`, "disk", "export", "c1@gone", xpath)
	h.fails(`"nope"`, "disk", "clone", "nope", "c9")
	h.fails(`"nope"`, "replica", "create", "nope")
	h.fails(`"nope"`, "replica", "restore", "c1", "nope")
	h.fails("invalid size", "disk", "create", "x", "--size", "12Q")
	h.fails("invalid size", "disk", "create", "x", "--size", "-5M")
	h.fails("--size is required", "disk", "create", "x")
	h.fails("already exists", "disk", "create", "c1", "--size", "1M")
	h.fails("already exists", "disk", "clone", "c3", "c1")
	h.ok("replica", "create", "c1", "dup")
	h.fails("already exists", "replica", "create", "c1", "dup")
	h.fails("usage", "disk", "create")
	h.fails("unknown flag", "disk", "ls", "--bogus")
	h.fails("", "disk", "import", "small", writeTemp(t, "big.img", make([]byte, 33<<20)))

	// A crash after a commit loses nothing committed.
	imgC := testImage(t, 3)
	wantC := padTo(imgC, blockSize)
	h.ok("disk", "import", "c1", writeTemp(t, "c.img", imgC))
	h.ok("disk", "commit", "c1")
	h.killDaemon()
	h.fails("no daemon running", "status")
	h.startDaemon()
	h.wantContent("c1", wantC)
	h.wantContent("c3", wantA)
	h.wantContent("web@r1", wantA)

	// A flipped byte on disk is found by scrub and never served.
	h.stopDaemon()
	if _, err := os.Stat(filepath.Join(home, node.SocketFile)); err == nil {
		t.Error("daemon left its socket behind after a clean stop")
	}
	bad := blockstore.Sum(blockstore.CodecRaw, imgC[:blockSize])
	corruptBlock(t, filepath.Join(home, node.BlocksDir), bad)
	h.startDaemon()
	r = h.run(nil, "scrub")
	if r.code == 0 || !strings.Contains(r.stdout, bad.String()) || !strings.Contains(r.stderr, "1 corrupt block") {
		t.Fatalf("scrub after corruption: exit %d, stdout %q, stderr %q; want exit 1 naming %s", r.code, r.stdout, r.stderr, bad)
	}
	h.fails("corrupt", "disk", "export", "c1", xpath)
	if _, err := os.Stat(xpath); err == nil {
		t.Error("a failed export left its output file behind")
	}
	h.wantContent("c3", wantA) // other disks still read
	h.stopDaemon()
}

// corruptBlock flips a byte of block c in the store at dir. The daemon
// must not be running.
func corruptBlock(t *testing.T, dir string, c cid.Cid) {
	t.Helper()
	s, err := blockstore.Open(dir, blockstore.DefaultOptions())
	if err != nil {
		t.Fatalf("open store to corrupt it: %v", err)
	}
	defer s.Close()
	if err := storetest.CorruptDisk(s, c); err != nil {
		t.Fatalf("corrupt %s: %v", c, err)
	}
}
