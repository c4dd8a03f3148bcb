package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/node"
	"github.com/weft-mesh/weft/volume"
)

// meshTimeout bounds every wait for the mesh to converge: failure
// detection takes seconds, heal passes run every healInterval.
const (
	meshTimeout  = 90 * time.Second
	healInterval = "2s"
)

// meshMember inits a node of site on ip (listening on a free port) and
// starts it; secretFrom, if set, is the home of a member whose cluster
// secret it joins with.
func meshMember(t *testing.T, site, ip, secretFrom string) *harness {
	t.Helper()
	h := newHarness(t, filepath.Join(t.TempDir(), site))
	args := []string{"init", "--site", site, "--nbd", "off", "--listen", "/ip4/" + ip + "/tcp/0"}
	if secretFrom != "" {
		args = append(args, "--cluster-secret-file", filepath.Join(secretFrom, node.ClusterSecretFile))
	}
	h.ok(args...)
	h.daemonArgs = []string{"--heal-interval", healInterval}
	h.startDaemon()
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

func (h *harness) diskInfo(name string) volume.DiskInfo {
	h.t.Helper()
	var d volume.DiskInfo
	h.jsonOut(&d, "disk", "info", name)
	return d
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
	if d := b.diskInfo("vm"); d.Owner != a.peerID() {
		t.Fatalf("B sees vm owned by %q, want A (%s)", d.Owner, a.peerID())
	}
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
}

// TestMeshRefusesWrongSecret: a node with another mesh's secret cannot
// join, and nobody lists it.
func TestMeshRefusesWrongSecret(t *testing.T) {
	a := meshMember(t, "site-a", "127.0.0.1", "")
	stranger := meshMember(t, "site-x", "127.0.0.4", "")
	stranger.fails("join", "join", a.addr())
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
