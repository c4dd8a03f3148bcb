package main

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/mesh/exchange"
	"github.com/weft-mesh/weft/node"
)

// filler takes the free space of a file system with one file, as another
// program filling the device would.
type filler struct {
	t    *testing.T
	path string
}

// fill grows the filler until the file system has at most leave bytes
// free (0: until it is full).
func (f filler) fill(leave int64) {
	f.t.Helper()
	file, err := os.OpenFile(f.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		f.t.Fatal(err)
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		f.t.Fatal(err)
	}
	end := st.Size()
	if free := freeOn(f.t, f.path); free > leave {
		if err := unix.Fallocate(int(file.Fd()), 0, end, free-leave); err != nil {
			f.t.Fatalf("fill %s: %v", f.path, err)
		}
		end += free - leave
	}
	for leave == 0 {
		if err := unix.Fallocate(int(file.Fd()), 0, end, 4096); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				f.t.Fatalf("fill %s: %v", f.path, err)
			}
			break
		}
		end += 4096
	}
}

// remove gives the space back.
func (f filler) remove() {
	f.t.Helper()
	if err := os.Remove(f.path); err != nil {
		f.t.Fatal(err)
	}
}

func freeOn(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(path), &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// qemuWrite writes pattern at [off, off+n) in one qemu-io session and
// flushes; it returns qemu-io's output and exit code.
func qemuWrite(t *testing.T, uri string, pattern byte, off, n string) (string, int) {
	t.Helper()
	return tool(t, cmdTimeout, "qemu-io", "-f", "raw", "-c", fmt.Sprintf("write -P %#x %s %s", pattern, off, n), "-c", "flush", uri)
}

// wantPatterns reads every range back with qemu-io and checks its pattern.
func wantPatterns(t *testing.T, what, uri string, ranges []pattern) {
	t.Helper()
	args := []string{"-f", "raw", "-r"}
	for _, r := range ranges {
		args = append(args, "-c", fmt.Sprintf("read -P %#x %s %s", r.p, r.off, r.n))
	}
	out, code := tool(t, cmdTimeout, "qemu-io", append(args, uri)...)
	if code != 0 || strings.Contains(out, "failed") {
		t.Fatalf("%s: acknowledged writes do not read back (exit %d):\n%s", what, code, out)
	}
}

type pattern struct {
	p      byte
	off, n string
}

const enospc = uint32(syscall.ENOSPC)

// TestDiskFull fills the file system of a node's home under real NBD and
// FUSE clients: writes that do not fit get ENOSPC (never EIO, never a
// hang), commits and sync-mode flushes that cannot make data durable
// fail, every write a FLUSH acknowledged reads back (also after a restart
// on the full device), and once the filler is deleted the same NBD
// connection, new ones and commits work again without a restart.
func TestDiskFull(t *testing.T) {
	needTool(t, "qemu-io", "qemu-utils")
	weftBinary(t)
	root := mountTmpfs(t, "200m")
	h := newHarness(t, filepath.Join(root, "home")) // registered after the unmount, so it runs first
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	h.ok("init", "--nbd", addr)
	h.daemonArgs = []string{"--reserve", "64M"}
	h.startDaemon()
	h.ok("disk", "create", "d", "--size", "128M", "--replicas", "1")
	h.ok("disk", "create", "s", "--size", "16M", "--replicas", "1", "--sync")
	uri, syncURI := "nbd://"+addr+"/d", "nbd://"+addr+"/s"
	fill := filler{t: t, path: filepath.Join(root, "filler")}
	if st := h.status().Space; st.State != api.SpaceOK || st.ReserveBytes != 64<<20 {
		t.Fatalf("status space on an empty 200 MiB home: %+v, want ok with a 64 MiB reserve", st)
	}

	// Acknowledged by a FLUSH before the device fills: a committed, b
	// perhaps only in the overlay.
	acked := []pattern{{0x11, "0", "8M"}}
	toolOK(t, "qemu-io", "-f", "raw", "-c", "write -P 0x11 0 8M", "-c", "flush", uri)
	h.ok("disk", "commit", "d")
	acked = append(acked, pattern{0x22, "8M", "8M"})
	toolOK(t, "qemu-io", "-f", "raw", "-c", "write -P 0x22 8M 8M", "-c", "flush", uri)
	held := nbdHold(t, addr, "d")

	// Below the store's floor (64 MiB), above the overlays' (32 MiB): the
	// overlay still takes writes, commits and sync-mode flushes fail with
	// out of space.
	fill.fill(44 << 20)
	if st := h.status().Space; st.State != api.SpaceFull {
		t.Fatalf("status space with 44 MiB free: %+v, want full", st)
	}
	if out := h.ok("status"); !strings.Contains(out, "DEVICE FULL") {
		t.Fatalf("weft status on a full device does not say so:\n%s", out)
	}
	acked = append(acked, pattern{0x33, "16M", "4M"})
	toolOK(t, "qemu-io", "-f", "raw", "-c", "write -P 0x33 16M 4M", "-c", "flush", uri)
	h.fails("out of space", "disk", "commit", "d")
	if out := h.ok("disk", "info", "d"); !strings.Contains(out, "commit error:") || !strings.Contains(out, "out of space") {
		t.Fatalf("disk info of a disk that cannot commit does not say why:\n%s", out)
	}
	out, code := qemuWrite(t, syncURI, 0x55, "0", "1M")
	// qemu-io writes with FUA, which flushes: the write itself fails.
	if code == 0 || !strings.Contains(out, "No space left on device") {
		t.Fatalf("qemu-io write and flush to a sync disk that cannot commit: exit %d, want ENOSPC:\n%s", code, out)
	}

	// Below the overlays' floor: writes that need space get ENOSPC while
	// the file system still has room, which is the block index's (a full
	// device is fatal to it); a write into blocks the overlay holds needs
	// none and goes on.
	fill.fill(20 << 20)
	out, code = qemuWrite(t, uri, 0x44, "32M", "8M")
	if code == 0 || !strings.Contains(out, "No space left on device") {
		t.Fatalf("qemu-io write below the overlays' floor: exit %d, want ENOSPC:\n%s", code, out)
	}
	if free := freeOn(t, fill.path); free < 16<<20 {
		t.Fatalf("%d bytes free after a write was refused at the overlays' floor, want the floor kept", free)
	}
	acked[len(acked)-1] = pattern{0x34, "16M", "4M"}
	toolOK(t, "qemu-io", "-f", "raw", "-c", "write -P 0x34 16M 4M", "-c", "flush", uri)

	// Full to the last byte: writes that need space get ENOSPC.
	fill.fill(0)
	out, code = qemuWrite(t, uri, 0x44, "32M", "8M")
	if code == 0 || !strings.Contains(out, "No space left on device") {
		t.Fatalf("qemu-io write on a full device: exit %d, want ENOSPC:\n%s", code, out)
	}
	if e := held.request(nbdCmdWrite, 48<<20, bytes.Repeat([]byte{0x66}, 1<<20)); e != enospc {
		t.Fatalf("NBD write on a full device: errno %d, want ENOSPC (%d)", e, enospc)
	}
	// Both answers are right: the flush makes the overlay's bitmap durable
	// (the data before it was flushed already). If the refused write
	// marked no block there is nothing new to write and it succeeds; if it
	// got part of its range into the overlay, the bitmap must be written
	// on a full file system and the flush fails with ENOSPC. It never
	// claims durability it lacks, and the reads below check what it kept.
	if e := held.request(nbdCmdFlush, 0, nil); e != 0 && e != enospc {
		t.Fatalf("NBD flush on a full device: errno %d, want 0 (nothing new to make durable) or ENOSPC (the bitmap cannot be written)", e)
	}
	wantPatterns(t, "full device", uri, acked)
	if needFUSE(t) {
		mnt := mountDir(t)
		h.ok("mount", "-d", mnt)
		out, err := trySys("dd", "if=/dev/zero", "of="+filepath.Join(mnt, "d.img"), "bs=1M", "count=8", "seek=64", "conv=notrunc,fsync", "oflag=direct")
		if err == nil || !strings.Contains(out+err.Error(), "No space left on device") {
			t.Fatalf("dd into the FUSE file on a full device: %v, want ENOSPC:\n%s", err, out)
		}
		h.ok("umount", mnt)
	}

	// A restart on the full device loses nothing acknowledged.
	h.stopDaemon()
	h.startDaemon()
	wantPatterns(t, "restart on a full device", uri, acked)
	// And after a crash on it: nothing gets the chance to shut down.
	h.killDaemon()
	h.startDaemon()
	wantPatterns(t, "kill -9 restart on a full device", uri, acked)
	// Opening the store gave back its index ballast: fill that too.
	fill.fill(0)
	held = nbdHold(t, addr, "d")
	if e := held.request(nbdCmdWrite, 48<<20, bytes.Repeat([]byte{0x66}, 1<<20)); e != enospc {
		t.Fatalf("NBD write on a full device after a restart: errno %d, want ENOSPC", e)
	}

	// Space comes back: the same connection writes and flushes, new
	// connections too, commits resume, status clears; no restart.
	fill.remove()
	if e := held.request(nbdCmdWrite, 48<<20, bytes.Repeat([]byte{0x66}, 1<<20)); e != 0 {
		t.Fatalf("NBD write on the same connection once space is back: errno %d, want 0", e)
	}
	if e := held.request(nbdCmdFlush, 0, nil); e != 0 {
		t.Fatalf("NBD flush on the same connection once space is back: errno %d, want 0", e)
	}
	acked = append(acked, pattern{0x66, "48M", "1M"}, pattern{0x77, "56M", "1M"})
	toolOK(t, "qemu-io", "-f", "raw", "-c", "write -P 0x77 56M 1M", "-c", "flush", uri)
	toolOK(t, "qemu-io", "-f", "raw", "-c", "write -P 0x55 0 1M", "-c", "flush", syncURI)
	// The background commit (once the head is quiet for 2 s) resumes.
	eventually(t, "background commits resume", func() (bool, string) {
		var info api.DiskInfo
		h.jsonOut(&info, "disk", "info", "d", "--json")
		return info.DirtyBytes == 0 && info.CommitError == "", fmt.Sprintf("%d bytes dirty, commit error %q", info.DirtyBytes, info.CommitError)
	})
	h.ok("disk", "commit", "d")
	if st := h.status().Space; st.State != api.SpaceOK {
		t.Fatalf("status space once space is back: %+v, want ok", st)
	}
	if out := h.ok("status"); strings.Contains(out, "DEVICE FULL") {
		t.Fatalf("weft status still says the device is full:\n%s", out)
	}
	wantPatterns(t, "space back", uri, acked)
	wantPatterns(t, "space back", syncURI, []pattern{{0x55, "0", "1M"}})
	h.stopDaemon()
	h.startDaemon()
	wantPatterns(t, "restart after space came back", uri, acked)
}

// needFUSE reports whether FUSE mounts work here (root and /dev/fuse).
func needFUSE(t *testing.T) bool {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Log("FUSE part skipped: needs root")
		return false
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Logf("FUSE part skipped: %v", err)
		return false
	}
	return true
}

// TestDiskFullReserve: B, a node on a small tmpfs home, is in the
// placement set of every block of a disk A imports. B stores copies for
// the mesh (A's pushes, its own heal passes) only while they leave its
// reserve free, refuses the rest with out of space (A's sync-mode writes
// get ENOSPC, the disk stays under-replicated), its own disks still
// write into the reserve, and once its file system grows heal completes
// the copies without a restart.
func TestDiskFullReserve(t *testing.T) {
	needTool(t, "qemu-io", "qemu-utils")
	const reserve = 160 << 20
	a := meshMember(t, "site-a", "127.0.0.1", "")
	broot := mountTmpfs(t, "256m")
	b := newHarness(t, filepath.Join(broot, "home"))
	b.ok("init", "--site", "site-b", "--nbd", "off", "--listen", "/ip4/127.0.0.2/tcp/0",
		"--cluster-secret-file", filepath.Join(a.home, node.ClusterSecretFile))
	b.daemonArgs = []string{"--heal-interval", healInterval, "--reserve", "160M", "--join", a.addr()}
	b.startDaemon()
	eventually(t, "two members", func() (bool, string) { n := a.alivePeers(); return n == 2, fmt.Sprint(n) })

	img := make([]byte, 128<<20)
	rand.NewChaCha8([32]byte{11}).Read(img)
	a.ok("disk", "import", "big", writeTemp(t, "big.img", img))
	eventually(t, "B refuses what would eat into its reserve", func() (bool, string) {
		st := b.status()
		return st.Heal != nil && strings.Contains(st.Heal.LastError, "out of space"), fmt.Sprintf("space %+v, heal %+v", st.Space, st.Heal)
	})
	st := b.status()
	t.Logf("B: %d MiB free with a %d MiB reserve, state %s", st.Space.FreeBytes>>20, reserve>>20, st.Space.State)
	// Puts admitted but not yet written count against the reserve, so
	// concurrent pushes and heal batches cannot overshoot it together;
	// what goes below it is the store's own overhead (record headers, the
	// index's WAL and flushes), allowed here up to one exchange frame.
	if st.Space.FreeBytes < reserve-exchange.MaxPutPayload || st.Space.State == api.SpaceFull {
		t.Fatalf("B: space %+v, want about its %d-byte reserve free", st.Space, reserve)
	}
	if out := b.ok("status"); !strings.Contains(out, "heal error:") || !strings.Contains(out, "out of space") {
		t.Fatalf("weft status on B does not show the refusal:\n%s", out)
	}
	// Another program takes what is left above the reserve.
	filler{t: t, path: filepath.Join(broot, "filler")}.fill(reserve - 1<<20)
	if out := b.ok("status"); !strings.Contains(out, "blocks from other nodes refused") {
		t.Fatalf("weft status on B below its reserve does not say it refuses blocks:\n%s", out)
	}
	if d := a.diskInfo("big"); d.UnderReplicated == 0 {
		t.Fatalf("disk info big on A: %+v, want blocks under-replicated", d)
	}

	// A sync-mode write needs B's copy, which B refuses: ENOSPC.
	a.ok("disk", "create", "db", "--size", "4M", "--sync")
	url := fmt.Sprintf("nbd+unix:///db?socket=%s", filepath.Join(a.home, "nbd.sock"))
	out, code := tool(t, cmdTimeout, "qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 1M", "-c", "flush", url)
	if code == 0 || !strings.Contains(out, "No space left on device") {
		t.Fatalf("sync write whose copy B refuses: exit %d, want ENOSPC:\n%s", code, out)
	}

	// B's own disk writes and commits into the reserve: 32 MiB that do
	// not dedup, so the commit stores 32 MiB below the reserve.
	b.ok("disk", "create", "own", "--size", "64M", "--replicas", "1")
	own := make([]byte, 32<<20)
	rand.NewChaCha8([32]byte{12}).Read(own)
	toolOK(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", writeTemp(t, "own.img", own),
		fmt.Sprintf("nbd+unix:///own?socket=%s", filepath.Join(b.home, "nbd.sock")))
	b.ok("disk", "commit", "own")
	if d := b.diskInfo("own"); d.DirtyBytes != 0 {
		t.Fatalf("disk info own on B after a commit: %+v, want nothing dirty", d)
	}
	b.wantContent("own", append(own, make([]byte, 32<<20)...))
	a.wantContent("big", img)

	// Space comes back (the file system grows): B's heal takes its share
	// and A's disk is fully replicated, with no restart.
	toolOK(t, "mount", "-o", "remount,size=512m", broot)
	eventually(t, "big fully replicated once B has room", func() (bool, string) {
		d := a.diskInfo("big")
		return d.UnderReplicated == 0, fmt.Sprintf("%d under-replicated", d.UnderReplicated)
	})
	toolOK(t, "qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 1M", "-c", "flush", url)
	if st := b.status().Space; st.State != api.SpaceOK {
		t.Fatalf("B's space once the file system grew: %+v, want ok", st)
	}
}
