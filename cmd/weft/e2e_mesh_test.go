package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/weft-mesh/weft/api"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/blockstore/storetest"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/node"
	"github.com/weft-mesh/weft/placement"
)

// meshTimeout bounds every wait for the mesh to converge: failure
// detection takes seconds, heal passes run every healInterval.
const (
	meshTimeout  = 90 * time.Second
	healInterval = "2s"
)

// meshMember inits a node of site on ip (listening on a free port), with
// more init arguments if given, and starts it; secretFrom, if set, is the
// home of a member whose cluster secret it joins with.
func meshMember(t *testing.T, site, ip, secretFrom string, initArgs ...string) *harness {
	t.Helper()
	h := initMeshMember(t, site, ip, secretFrom, initArgs...)
	h.startDaemon()
	return h
}

// initMeshMember is meshMember without starting the daemon.
func initMeshMember(t *testing.T, site, ip, secretFrom string, initArgs ...string) *harness {
	t.Helper()
	h := newHarness(t, filepath.Join(t.TempDir(), site))
	args := append([]string{"init", "--site", site, "--nbd", "off", "--listen", "/ip4/" + ip + "/tcp/0"}, initArgs...)
	if secretFrom != "" {
		args = append(args, "--cluster-secret-file", filepath.Join(secretFrom, node.ClusterSecretFile))
	}
	h.ok(args...)
	h.daemonArgs = []string{"--heal-interval", healInterval}
	return h
}

// addr returns a dialable multiaddr of the node.
func (h *harness) addr() string {
	h.t.Helper()
	var id node.IDInfo
	h.jsonOut(&id, "id")
	if id.PeerID == "" || len(id.Addrs) == 0 || !strings.HasSuffix(id.Addrs[0], "/p2p/"+id.PeerID) {
		h.t.Fatalf("weft id: %+v, want a peer ID and addresses ending in /p2p/<id>", id)
	}
	return id.Addrs[0]
}

func (h *harness) peerID() string {
	h.t.Helper()
	var id node.IDInfo
	h.jsonOut(&id, "id")
	return id.PeerID
}

func (h *harness) peers() []node.Peer {
	h.t.Helper()
	var ps []node.Peer
	h.jsonOut(&ps, "peers")
	return ps
}

// alivePeers counts the members h sees alive, itself included.
func (h *harness) alivePeers() int {
	n := 0
	for _, p := range h.peers() {
		if p.State == "alive" {
			n++
		}
	}
	return n
}

func (h *harness) diskInfo(name string) api.DiskInfo {
	h.t.Helper()
	var d api.DiskInfo
	h.jsonOut(&d, "disk", "info", name)
	return d
}

// tryDiskInfo is diskInfo for polling: a disk not known yet is no failure.
func (h *harness) tryDiskInfo(name string) (api.DiskInfo, string) {
	h.t.Helper()
	var d api.DiskInfo
	r := h.run(nil, "disk", "info", name, "--json")
	if r.code != 0 {
		return d, r.stderr
	}
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		h.t.Fatalf("disk info %s --json: %v", name, err)
	}
	return d, ""
}

// eventually polls cond until it holds or meshTimeout passes.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(meshTimeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v (last: %s)", what, meshTimeout, state)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestMeshReplicatesAndHeals: three sites join by multiaddr; a disk written
// on A with R=2 gets its copies; A is killed -9 and B still reads the whole
// disk; B and C heal to two copies; A restarts and rejoins by itself; the
// surplus copies are dropped and nothing is lost.
func TestMeshReplicatesAndHeals(t *testing.T) {
	a := meshMember(t, "site-a", "127.0.0.1", "")
	b := meshMember(t, "site-b", "127.0.0.2", a.home)
	c := meshMember(t, "site-c", "127.0.0.3", a.home)
	b.ok("join", a.addr())
	c.ok("join", b.addr())
	for _, h := range []*harness{a, b, c} {
		eventually(t, "three members alive on "+filepath.Base(h.home), func() (bool, string) {
			n := h.alivePeers()
			return n == 3, fmt.Sprint(n, " alive")
		})
	}
	sites := map[string]bool{}
	for _, p := range a.peers() {
		sites[p.Site] = true
		if len(p.Addrs) == 0 {
			t.Errorf("peer %s gossiped no addresses", p.PeerID)
		}
	}
	if len(sites) != 3 {
		t.Fatalf("sites seen by A: %v", sites)
	}

	img := testImage(t, 11)
	want := padTo(img, blockSize)
	a.ok("disk", "import", "vm", writeTemp(t, "vm.img", img))
	a.ok("disk", "commit", "vm")
	dataBlocks := int64(0)
	for off := 0; off < len(want); off += blockSize {
		if !bytes.Equal(want[off:off+blockSize], make([]byte, blockSize)) {
			dataBlocks++
		}
	}
	eventually(t, "vm fully replicated", func() (bool, string) {
		d := a.diskInfo("vm")
		return d.UnderReplicated == 0 && a.status().Heal.Passes > 0, fmt.Sprintf("%+v", d)
	})
	aID := a.peerID()
	eventually(t, "B sees vm owned by A", func() (bool, string) {
		r := b.run(nil, "disk", "info", "vm", "--json")
		return r.code == 0 && strings.Contains(r.stdout, `"owner": "`+aID+`"`), r.stdout + r.stderr
	})
	copies := func() int64 { return b.status().Blocks + c.status().Blocks }
	if n := copies(); n < dataBlocks {
		t.Fatalf("B and C hold %d blocks, want at least the %d data blocks of vm (R=2 with A)", n, dataBlocks)
	}

	a.killDaemon()
	b.wantContent("vm", want)
	for _, h := range []*harness{b, c} {
		eventually(t, "healed to R=2 on "+filepath.Base(h.home), func() (bool, string) {
			st := h.status()
			return h.alivePeers() == 2 && st.UnderReplicated == 0 && st.Heal.LastError == "" && st.Blocks >= dataBlocks,
				fmt.Sprintf("alive %d, under %d, blocks %d, heal %+v", h.alivePeers(), st.UnderReplicated, st.Blocks, st.Heal)
		})
	}
	c.wantContent("vm", want)
	before := copies()

	a.startDaemon() // no join: it rejoins the peers it knew
	eventually(t, "A back in the mesh", func() (bool, string) {
		n := b.alivePeers()
		return n == 3, fmt.Sprint(n, " alive on B")
	})
	eventually(t, "surplus dropped", func() (bool, string) {
		n := copies()
		return n < before, fmt.Sprintf("B+C hold %d blocks, %d before A came back", n, before)
	})
	for _, h := range []*harness{a, b, c} {
		h.wantContent("vm", want)
	}
	if d := a.diskInfo("vm"); d.UnderReplicated != 0 || d.Owner != a.peerID() {
		t.Fatalf("vm on A after rejoin: %+v", d)
	}

	// A block C holds, corrupted on disk, is found by scrub and replaced
	// with a good copy from a peer. The block is one of C's placement
	// set, so heal does not drop it as surplus meanwhile.
	var members []placement.Member
	for _, p := range c.peers() {
		id, err := meshnet.ParsePeerID(p.PeerID)
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, placement.Member{ID: string(id), Site: p.Site})
	}
	cID, err := meshnet.ParsePeerID(c.peerID())
	if err != nil {
		t.Fatal(err)
	}
	c.stopDaemon()
	victim := corruptHeldBlock(t, filepath.Join(c.home, node.BlocksDir), want, func(k cid.Cid) bool {
		return placement.Contains(placement.Place(k.Hash(), members, 2), string(cID))
	})
	c.startDaemon()
	r := c.run(nil, "scrub")
	if r.code != 0 || !strings.Contains(r.stdout, victim.String()) || !strings.Contains(r.stdout, "repaired from a peer") {
		t.Fatalf("scrub on C: exit %d, stdout %q, stderr %q; want %s repaired", r.code, r.stdout, r.stderr, victim)
	}
	if r := c.run(nil, "scrub"); r.code != 0 || !strings.Contains(r.stdout, ", 0 corrupt") {
		t.Fatalf("second scrub on C: %q %q", r.stdout, r.stderr)
	}
	c.wantContent("vm", want)

	// Handover: A gives vm to B with a higher epoch; B can commit it, A
	// no longer can.
	bID := b.peerID()
	a.ok("disk", "move", "vm", "--to", bID)
	eventually(t, "B adopts vm", func() (bool, string) {
		d := b.diskInfo("vm")
		r := b.run(nil, "disk", "commit", "vm")
		return d.Owner == bID && d.Epoch == 2 && r.code == 0, fmt.Sprintf("%+v %s", d, r.stderr)
	})
	eventually(t, "A gives vm up", func() (bool, string) {
		r := a.run(nil, "disk", "commit", "vm")
		return r.code != 0, r.stdout
	})
	b.wantContent("vm", want)
	a.wantContent("vm", want) // A still reads it, as any node may

	// Taking a disk whose owner is alive needs --force; then the owner
	// is fenced and gives it up.
	c.fails("is alive", "disk", "take", "vm")
	c.ok("disk", "take", "vm", "--force")
	cPeer := c.peerID()
	eventually(t, "B gives vm up to C", func() (bool, string) {
		r := b.run(nil, "disk", "commit", "vm")
		d := a.diskInfo("vm")
		return r.code != 0 && d.Owner == cPeer && d.Epoch == 3, fmt.Sprintf("%+v", d)
	})
	c.wantContent("vm", want)
}

// corruptHeldBlock flips a byte of one of img's data blocks in the (stopped)
// store at dir and returns its CID.
func corruptHeldBlock(t *testing.T, dir string, img []byte, pick func(cid.Cid) bool) cid.Cid {
	t.Helper()
	s, err := blockstore.Open(dir, blockstore.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for off := 0; off+blockSize <= len(img); off += blockSize {
		blk := img[off : off+blockSize]
		if bytes.Equal(blk, make([]byte, blockSize)) {
			continue
		}
		c := blockstore.Sum(blockstore.CodecRaw, blk)
		if ok, _ := s.Has(context.Background(), c); ok && pick(c) {
			if err := storetest.CorruptDisk(s, c); err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
	t.Fatal("the store holds no data block of the image")
	return cid.Undef
}

// TestJoinToken: a node initialised with a member's join token starts and
// joins the mesh with no --join; a malformed token is refused at init.
func TestJoinToken(t *testing.T) {
	a := meshMember(t, "site-a", "127.0.0.1", "")
	tok := strings.TrimSpace(a.ok("token"))
	b := newHarness(t, filepath.Join(t.TempDir(), "site-b"))
	b.fails("join token", "init", "--site", "site-b", "--join-token", "weft-join-v1:beef:/ip4/127.0.0.1/tcp/1")
	b.ok("init", "--site", "site-b", "--nbd", "off", "--listen", "/ip4/127.0.0.2/tcp/0", "--join-token", tok)
	b.daemonArgs = []string{"--heal-interval", healInterval}
	b.startDaemon()
	for _, h := range []*harness{a, b} {
		eventually(t, "two members on "+filepath.Base(h.home), func() (bool, string) { n := h.alivePeers(); return n == 2, fmt.Sprint(n) })
	}
}

// TestMeshRefusesWrongSecret: a node with another mesh's secret cannot
// join, and nobody lists it.
func TestMeshRefusesWrongSecret(t *testing.T) {
	a := meshMember(t, "site-a", "127.0.0.1", "")
	stranger := meshMember(t, "site-x", "127.0.0.4", "")
	if line := stranger.fails("wrong cluster secret", "join", a.addr()); strings.Count(line, "join") != 1 || strings.Count(line, a.peerID()) != 1 {
		t.Errorf("join with the wrong secret: %q, want the command and the peer named once", line)
	}
	time.Sleep(2 * time.Second)
	for _, p := range a.peers() {
		if !p.Self {
			t.Fatalf("A lists %+v after a join with the wrong secret", p)
		}
	}
	if n := stranger.alivePeers(); n != 1 {
		t.Fatalf("the stranger sees %d members", n)
	}
	// Init refuses a secret file that is not one.
	bad := writeTemp(t, "bad.secret", []byte("not hex"))
	h := newHarness(t, filepath.Join(t.TempDir(), "bad"))
	h.fails("cluster secret", "init", "--cluster-secret-file", bad)
	if _, err := os.Stat(filepath.Join(h.home, node.ConfigFile)); err == nil {
		t.Fatal("init with a bad secret left a config behind")
	}
}

// TestMeshSyncDisk: a flush of a --sync disk returns only once R nodes hold
// the data, so killing the writer right after the flush loses nothing; and
// with too few live nodes for R, the flush fails instead of lying.
func TestMeshSyncDisk(t *testing.T) {
	needTool(t, "qemu-io", "qemu-utils")
	a := meshMember(t, "site-a", "127.0.0.1", "")
	// B joins at start, with weft daemon --join.
	b := newHarness(t, filepath.Join(t.TempDir(), "site-b"))
	b.ok("init", "--site", "site-b", "--nbd", "off", "--listen", "/ip4/127.0.0.2/tcp/0",
		"--cluster-secret-file", filepath.Join(a.home, node.ClusterSecretFile))
	b.daemonArgs = []string{"--heal-interval", healInterval, "--join", a.addr()}
	b.startDaemon()
	eventually(t, "two members", func() (bool, string) { n := a.alivePeers(); return n == 2, fmt.Sprint(n) })
	a.ok("disk", "create", "db", "--size", "4M", "--sync")
	eventually(t, "B sees db", func() (bool, string) {
		r := b.run(nil, "disk", "info", "db")
		return r.code == 0, r.stderr
	})
	a.nbdWrite("db", 0x5a, 65536, 3*65536)
	a.killDaemon() // right after the acknowledged flush
	want := make([]byte, 4<<20)
	copy(want[65536:4*65536], bytes.Repeat([]byte{0x5a}, 3*65536))
	b.wantContent("db", want)

	eventually(t, "B sees A dead", func() (bool, string) { n := b.alivePeers(); return n == 1, fmt.Sprint(n) })
	b.ok("disk", "take", "db")
	url := fmt.Sprintf("nbd+unix:///db?socket=%s", filepath.Join(b.home, "nbd.sock"))
	out, code := tool(t, cmdTimeout, "qemu-io", "-f", "raw", "-c", "write -P 0x66 0 65536", "-c", "flush", url)
	// qemu-io writes through (FUA), so the write itself reports it.
	if code == 0 || !strings.Contains(out, "failed") {
		t.Fatalf("sync write with one live node of two: exit %d, %q; want it refused", code, out)
	}
}

// TestMeshPortGarbage sends garbage to the mesh port: the node stays up and
// keeps serving.
func TestMeshPortGarbage(t *testing.T) {
	a := meshMember(t, "site-a", "127.0.0.1", "")
	var id node.IDInfo
	a.jsonOut(&id, "id")
	hostPort := ""
	for _, addr := range id.Addrs {
		// /ip4/127.0.0.1/tcp/PORT/p2p/ID
		parts := strings.Split(addr, "/")
		if len(parts) > 4 && parts[3] == "tcp" {
			hostPort = parts[2] + ":" + parts[4]
		}
	}
	if hostPort == "" {
		t.Fatalf("no TCP address in %v", id.Addrs)
	}
	for i := range 20 {
		conn, err := net.DialTimeout("tcp", hostPort, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		junk := make([]byte, 1+i*997)
		for j := range junk {
			junk[j] = byte(j*31 + i)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		conn.Write(junk)
		conn.Close()
	}
	if st := a.status(); st.PeerID != id.PeerID {
		t.Fatalf("status after garbage: %+v", st)
	}
	a.ok("disk", "create", "still-fine", "--size", "1M")
}

// TestPushSpacesuitToSites publishes a spacesuit on A and pushes it to two
// sites at once; A is killed and each site clones it and reads it back
// byte for byte. A new version with a few changed blocks then costs about
// the changed bytes. A throttled push cancelled midway resumes: both runs
// together move about one copy.
func TestPushSpacesuitToSites(t *testing.T) {
	needTool(t, "qemu-io", "qemu-utils")
	a := meshMember(t, "site-a", "127.0.0.1", "")
	b := meshMember(t, "site-b", "127.0.0.2", a.home)
	c := meshMember(t, "site-c", "127.0.0.3", a.home)
	b.ok("join", a.addr())
	c.ok("join", a.addr())
	for _, h := range []*harness{a, b, c} {
		eventually(t, "three members", func() (bool, string) { n := h.alivePeers(); return n == 3, fmt.Sprint(n) })
	}
	img := testImage(t, 21)
	want := padTo(img, blockSize)
	a.ok("disk", "import", "gold", writeTemp(t, "gold.img", img), "--replicas", "1")
	if out := a.ok("spacesuit", "publish", "ubuntu", "gold"); strings.TrimSpace(out) != "ubuntu@1" {
		t.Fatalf("publish printed %q, want ubuntu@1", out)
	}
	var tr node.TransferInfo
	a.jsonOut(&tr, "push", "ubuntu@1", "--to", "site-b,site-c")
	if tr.State != "done" || len(tr.Targets) != 2 {
		t.Fatalf("push: %+v", tr)
	}
	for _, tp := range tr.Targets {
		if tp.State != "done" {
			t.Fatalf("target %+v", tp)
		}
	}

	// Version 2: 32 blocks (2 MiB) changed.
	url := fmt.Sprintf("nbd+unix:///gold?socket=%s", filepath.Join(a.home, "nbd.sock"))
	toolOK(t, "qemu-io", "-f", "raw", "-c", "write -P 0x77 0 2M", url)
	copy(want[:2<<20], bytes.Repeat([]byte{0x77}, 2<<20))
	a.ok("spacesuit", "publish", "ubuntu", "gold")
	a.jsonOut(&tr, "push", "ubuntu@2", "--to", "site-b,site-c")
	const changed = 2 << 20
	for _, tp := range tr.Targets {
		if tp.State != "done" || tp.Bytes > 3*changed/2 {
			t.Fatalf("push of version 2 to %s moved %d bytes, want about the %d changed: %+v", tp.Target, tp.Bytes, changed, tp)
		}
	}

	// A site serves the version it received over NBD, read-only.
	url = fmt.Sprintf("nbd+unix:///ubuntu@2?socket=%s", filepath.Join(c.home, "nbd.sock"))
	toolOK(t, "qemu-io", "-r", "-f", "raw", "-c", "read -P 0x77 0 2M", url)
	if out, code := tool(t, cmdTimeout, "qemu-io", "-f", "raw", "-c", "write 0 4k", url); code == 0 {
		t.Fatalf("a write to spacesuit ubuntu@2 over NBD succeeded: %s", out)
	}
	// Any node reads a disk another owns, read-only, on its local socket:
	// the disk's last committed state, fetched from the holders.
	url = fmt.Sprintf("nbd+unix:///gold?socket=%s", filepath.Join(c.home, "nbd.sock"))
	eventually(t, "C reads A's disk gold over NBD", func() (bool, string) {
		out, code := tool(t, cmdTimeout, "qemu-io", "-r", "-f", "raw", "-c", "read -P 0x77 0 2M", url)
		return code == 0 && !strings.Contains(out, "Pattern verification failed"), out
	})
	if out, code := tool(t, cmdTimeout, "qemu-io", "-f", "raw", "-c", "write 0 4k", url); code == 0 {
		t.Fatalf("a write to A's disk gold through C's NBD socket succeeded: %s", out)
	}
	// And in C's FUSE mount, as a read-only file.
	if _, err := os.Stat("/dev/fuse"); err == nil && os.Geteuid() == 0 {
		mnt := mountDir(t)
		c.ok("mount", "-d", mnt)
		img := filepath.Join(mnt, "gold.img")
		eventually(t, "C's mount shows A's disk gold", func() (bool, string) {
			got, err := os.ReadFile(img)
			return err == nil && bytes.Equal(got, want), fmt.Sprintf("read %d bytes: %v", len(got), err)
		})
		if st, err := os.Stat(img); err != nil || st.Mode().Perm() != 0o444 {
			t.Fatalf("stat %s: %v, %v; want mode 0444", img, st, err)
		}
		if _, err := os.OpenFile(img, os.O_RDWR, 0); !errors.Is(err, syscall.EROFS) {
			t.Fatalf("open A's disk for writing in C's mount: %v, want EROFS", err)
		}
		c.ok("umount", mnt)
	}
	// Removing a version anywhere removes it everywhere, publisher included.
	b.ok("spacesuit", "rm", "ubuntu@1")
	eventually(t, "ubuntu@1 gone on the publisher", func() (bool, string) {
		var list []api.SpacesuitInfo
		a.jsonOut(&list, "spacesuit", "ls")
		for _, s := range list {
			if s.Ref == "ubuntu@1" {
				return false, fmt.Sprintf("%+v", list)
			}
		}
		return len(list) > 0, fmt.Sprintf("%+v", list)
	})

	a.killDaemon()
	for i, h := range []*harness{b, c} {
		vm := fmt.Sprint("vm", i)
		h.ok("disk", "clone", "ubuntu@2", vm)
		h.wantContent(vm, want)
	}
}

// TestTransferCancelResumes cancels a throttled pull midway and pulls
// again: the second run starts from what arrived, so both move about one
// copy in all.
func TestTransferCancelResumes(t *testing.T) {
	a := meshMember(t, "site-a", "127.0.0.1", "")
	b := meshMember(t, "site-b", "127.0.0.2", a.home)
	b.ok("join", a.addr())
	eventually(t, "two members", func() (bool, string) { n := b.alivePeers(); return n == 2, fmt.Sprint(n) })
	img := make([]byte, 16<<20)
	rand.NewChaCha8([32]byte{31}).Read(img)
	a.ok("disk", "import", "big", writeTemp(t, "big.img", img), "--replicas", "1")
	a.ok("replica", "create", "big", "r1")
	eventually(t, "B sees big@r1", func() (bool, string) {
		r := b.run(nil, "disk", "info", "big")
		return r.code == 0, r.stderr
	})
	id := strings.TrimSpace(b.ok("pull", "big@r1", "--from", "site-a", "--bwlimit", "1M", "--block-size", "256K", "--detach"))
	find := func() node.TransferInfo {
		var list []node.TransferInfo
		b.jsonOut(&list, "transfers")
		for _, tr := range list {
			if tr.ID == id {
				return tr
			}
		}
		t.Fatalf("transfer %s not listed", id)
		return node.TransferInfo{}
	}
	eventually(t, "the pull moves some bytes", func() (bool, string) {
		tr := find()
		return tr.BytesSent > 0, fmt.Sprintf("%+v", tr)
	})
	b.ok("transfer", "cancel", id)
	first := find()
	if first.State != "cancelled" || first.BytesSent >= first.TotalBytes {
		t.Fatalf("after cancel: %+v, want cancelled part way", first)
	}
	// A cancelled transfer is over: the journal forgets it, so the restart
	// below does not resume it.
	eventually(t, "the cancelled pull out of the journal", func() (bool, string) {
		journal, err := os.ReadFile(filepath.Join(b.home, node.MeshDir, "transfers.json"))
		return err == nil && !strings.Contains(string(journal), id), fmt.Sprintf("%q %v", journal, err)
	})
	// The receiver restarts in between: what arrived is on its disk.
	b.stopDaemon()
	b.startDaemon()
	eventually(t, "B back in the mesh", func() (bool, string) { n := b.alivePeers(); return n == 2, fmt.Sprint(n) })
	var second node.TransferInfo
	b.jsonOut(&second, "pull", "big@r1", "--from", "site-a")
	if second.State != "done" {
		t.Fatalf("second pull: %+v", second)
	}
	t.Logf("first run moved %d of %d bytes before the cancel, the second %d", first.BytesSent, first.TotalBytes, second.BytesSent)
	var list []node.TransferInfo
	b.jsonOut(&list, "transfers")
	for _, tr := range list {
		if tr.ID == id {
			t.Fatalf("the cancelled pull came back after the restart: %+v", tr)
		}
	}
	if second.Skipped == 0 {
		t.Fatalf("the second pull skipped no block: %+v", second)
	}
	if total := first.BytesSent + second.BytesSent; total > first.TotalBytes*115/100 || second.BytesSent >= first.TotalBytes {
		t.Fatalf("moved %d + %d bytes over both runs, want about one copy (%d)", first.BytesSent, second.BytesSent, first.TotalBytes)
	}
	a.killDaemon()
	b.wantContent("big@r1", padTo(img, blockSize))
}

// TestTransferResumesAfterCrash kills the sender of a throttled push with
// SIGKILL midway: when it starts again it resumes the push by itself,
// under the same ID, and the site ends up with the whole replica.
func TestTransferResumesAfterCrash(t *testing.T) {
	a := meshMember(t, "site-a", "127.0.0.1", "")
	b := newHarness(t, filepath.Join(t.TempDir(), "site-b"))
	b.ok("init", "--site", "site-b", "--nbd", "off", "--listen", "/ip4/127.0.0.2/tcp/0",
		"--cluster-secret-file", filepath.Join(a.home, node.ClusterSecretFile))
	b.daemonArgs = []string{"--heal-bandwidth", "1K", "--join", a.addr()} // only the push moves blocks
	b.startDaemon()
	eventually(t, "two members", func() (bool, string) { n := a.alivePeers(); return n == 2, fmt.Sprint(n) })
	img := make([]byte, 12<<20)
	rand.NewChaCha8([32]byte{57}).Read(img)
	a.ok("disk", "import", "big", writeTemp(t, "big.img", img), "--replicas", "1")
	a.ok("replica", "create", "big", "r1")
	id := strings.TrimSpace(a.ok("push", "big@r1", "--to", "site-b", "--bwlimit", "1M", "--block-size", "256K", "--detach"))
	find := func() (node.TransferInfo, bool) {
		var list []node.TransferInfo
		a.jsonOut(&list, "transfers")
		for _, tr := range list {
			if tr.ID == id {
				return tr, true
			}
		}
		return node.TransferInfo{}, false
	}
	// Killed early on, while seconds of the push remain at 1 MB/s.
	eventually(t, "the push moves some bytes", func() (bool, string) {
		tr, _ := find()
		return tr.State == "running" && tr.BytesSent > 0 && tr.BytesSent < int64(len(img))/2, fmt.Sprintf("%+v", tr)
	})
	a.killDaemon()
	a.startDaemon()
	eventually(t, "the push resumed and done after the restart", func() (bool, string) {
		tr, ok := find()
		return ok && tr.State == "done", fmt.Sprintf("%+v", tr)
	})
	b.wantContent("big@r1", padTo(img, blockSize))
	journal, err := os.ReadFile(filepath.Join(a.home, node.MeshDir, "transfers.json"))
	if err != nil || strings.Contains(string(journal), id) {
		t.Fatalf("journal after the resumed push ended: %q, %v; want it forgotten", journal, err)
	}
}

// TestScheduledReplication replicates a disk to another site every second:
// a cycle runs only when the disk changed and then sends about the changed
// bytes; older replicated states beyond --keep go, on both sides; recover
// brings the damaged disk back to the last replicated state.
func TestScheduledReplication(t *testing.T) {
	needTool(t, "qemu-io", "qemu-utils")
	a := meshMember(t, "site-a", "127.0.0.1", "")
	b := meshMember(t, "site-b", "127.0.0.2", a.home)
	b.ok("join", a.addr())
	eventually(t, "two members", func() (bool, string) { n := a.alivePeers(); return n == 2, fmt.Sprint(n) })
	const mib = 1 << 20
	a.ok("disk", "create", "d", "--size", "8M", "--replicas", "1")
	a.nbdWrite("d", 0x31, 0, mib)
	a.ok("replicate", "d", "--to", "site-b", "--every", "1s", "--keep", "1")
	policy := func() node.Policy {
		var ps []node.Policy
		a.jsonOut(&ps, "replicate", "ls")
		if len(ps) != 1 {
			t.Fatalf("replicate ls: %+v, want one policy", ps)
		}
		return ps[0]
	}
	eventually(t, "a first cycle", func() (bool, string) { p := policy(); return p.Cycles == 1 && p.LastError == "", fmt.Sprintf("%+v", p) })
	first := policy()
	var reps []api.ReplicaInfo
	b.jsonOut(&reps, "replica", "ls", "d")
	if len(reps) != 1 || reps[0].Name != first.LastReplica {
		t.Fatalf("site-b holds replicas %+v, want %s", reps, first.LastReplica)
	}
	// At the site, the replicated copy starts a VM.
	b.ok("disk", "clone", "d@"+first.LastReplica, "d-dr")
	firstWant := make([]byte, 8*mib)
	copy(firstWant, bytes.Repeat([]byte{0x31}, mib))
	b.wantContent("d-dr", firstWant)
	time.Sleep(3 * time.Second) // no change: no cycle
	if p := policy(); p.Cycles != 1 {
		t.Fatalf("cycles ran without a change: %+v", p)
	}

	a.nbdWrite("d", 0x32, 4*mib, 65536) // one block
	eventually(t, "a second cycle", func() (bool, string) { p := policy(); return p.Cycles == 2, fmt.Sprintf("%+v", p) })
	// (The changed block may already be at the site: the owner's
	// replication can place it there. Either way, no more than it moves.)
	second := policy()
	if second.LastBytes > 4*65536 {
		t.Fatalf("second cycle moved %d bytes for one changed 64 KiB block: %+v", second.LastBytes, second)
	}
	want := make([]byte, 8*mib)
	copy(want, bytes.Repeat([]byte{0x31}, mib))
	copy(want[4*mib:], bytes.Repeat([]byte{0x32}, 65536))
	b.wantContent("d@"+second.LastReplica, want)
	// --keep 1: the first state is gone from the owner and from the site
	// (the clone made from it at the site is independent and stays).
	for _, h := range []*harness{a, b} {
		eventually(t, "only the last replicated state on "+filepath.Base(h.home), func() (bool, string) {
			var reps []api.ReplicaInfo
			h.jsonOut(&reps, "replica", "ls", "d")
			var names []string
			for _, r := range reps {
				if strings.HasPrefix(r.Name, "repl-") {
					names = append(names, r.Name)
				}
			}
			return len(names) == 1 && names[0] == second.LastReplica, fmt.Sprint(names)
		})
	}
	b.wantContent("d-dr", firstWant)

	a.ok("replicate", "rm", "d", "--to", "site-b")
	a.nbdWrite("d", 0x99, 0, 2*mib)          // damage after the last cycle...
	a.ok("recover", "d", "--from", "site-b") // ...undone from what the site holds
	a.wantContent("d", want)
}

// TestTransferPriorityAndLimit: two pulls compete for a node's transfer
// budget: the very-high one finishes first. A --bwlimit holds over a
// multi-second window (a loose lower bound on the time, never an upper
// one: this is a behaviour test, not a benchmark).
func TestTransferPriorityAndLimit(t *testing.T) {
	a := meshMember(t, "site-a", "127.0.0.1", "")
	for i, name := range []string{"hi", "lo", "bw"} {
		img := make([]byte, 6<<20)
		rand.NewChaCha8([32]byte{byte(40 + i)}).Read(img)
		a.ok("disk", "import", name, writeTemp(t, name+".img", img), "--replicas", "1")
	}
	// B joins after the imports, with heal all but stopped, so that only
	// the transfers move these blocks.
	b := newHarness(t, filepath.Join(t.TempDir(), "site-b"))
	b.ok("init", "--site", "site-b", "--nbd", "off", "--listen", "/ip4/127.0.0.2/tcp/0",
		"--cluster-secret-file", filepath.Join(a.home, node.ClusterSecretFile))
	b.daemonArgs = []string{"--heal-bandwidth", "1K", "--transfer-bandwidth", "3M", "--join", a.addr()}
	b.startDaemon()
	eventually(t, "B sees the disks", func() (bool, string) {
		r := b.run(nil, "disk", "info", "bw")
		return r.code == 0, r.stderr
	})
	lo := strings.TrimSpace(b.ok("pull", "lo", "--from", "site-a", "--priority", "very-low", "--detach"))
	hi := strings.TrimSpace(b.ok("pull", "hi", "--from", "site-a", "--priority", "very-high", "--detach"))
	byID := func() map[string]node.TransferInfo {
		var list []node.TransferInfo
		b.jsonOut(&list, "transfers")
		out := map[string]node.TransferInfo{}
		for _, tr := range list {
			out[tr.ID] = tr
		}
		return out
	}
	eventually(t, "both pulls done", func() (bool, string) {
		m := byID()
		return m[lo].State == "done" && m[hi].State == "done", fmt.Sprintf("lo %s, hi %s", m[lo].State, m[hi].State)
	})
	m := byID()
	t.Logf("very-high ended %v after start, very-low %v", m[hi].Ended.Sub(m[hi].Started), m[lo].Ended.Sub(m[lo].Started))
	if !m[hi].Ended.Before(m[lo].Ended) {
		t.Fatalf("the very-low pull ended first: hi %+v, lo %+v", m[hi], m[lo])
	}

	start := time.Now()
	var bw node.TransferInfo
	b.jsonOut(&bw, "pull", "bw", "--from", "site-a", "--bwlimit", "1M")
	took := time.Since(start)
	floor := time.Duration(float64(bw.TotalBytes) / (1 << 20) * 0.7 * float64(time.Second))
	t.Logf("pulled %d bytes at --bwlimit 1M in %v", bw.TotalBytes, took)
	if bw.State != "done" || bw.TotalBytes < 4<<20 || took < floor {
		t.Fatalf("bwlimit 1M: %d bytes in %v, want at least %v: %+v", bw.TotalBytes, took, floor, bw)
	}
}

// TestPullBasedBackup: a node at an archive site pulls a disk on a
// schedule; the owner, its disk damaged and its own history gone, recovers
// from what the archive holds.
func TestPullBasedBackup(t *testing.T) {
	needTool(t, "qemu-io", "qemu-utils")
	a := meshMember(t, "site-a", "127.0.0.1", "")
	b := meshMember(t, "archive", "127.0.0.2", a.home)
	b.ok("join", a.addr())
	eventually(t, "two members", func() (bool, string) { n := a.alivePeers(); return n == 2, fmt.Sprint(n) })
	const mib = 1 << 20
	a.ok("disk", "create", "db", "--size", "4M", "--replicas", "1")
	a.nbdWrite("db", 0x41, mib, mib)
	a.ok("disk", "commit", "db")
	eventually(t, "the archive sees db", func() (bool, string) {
		d, why := b.tryDiskInfo("db")
		return d.Root != "", why
	})
	b.ok("replicate", "db", "--pull", "--every", "1s")
	var p node.Policy
	eventually(t, "a pull cycle", func() (bool, string) {
		var ps []node.Policy
		a.jsonOut(&ps, "replicate", "ls") // the policy is in the catalog: any node lists it
		if len(ps) == 1 {
			p = ps[0]
		}
		return p.Cycles >= 1 && p.Site == "archive" && p.Puller == b.peerID(), fmt.Sprintf("%+v", ps)
	})
	want := make([]byte, 4*mib)
	copy(want[mib:], bytes.Repeat([]byte{0x41}, mib))
	b.wantContent("db@"+p.LastReplica, want)

	b.ok("replicate", "rm", "db", "--to", "archive")
	a.nbdWrite("db", 0x66, 0, 4*mib)
	a.ok("recover", "db", "--from", "archive")
	a.wantContent("db", want)
}
