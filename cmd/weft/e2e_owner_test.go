package main

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
)

// smallImage returns n bytes of seeded random data.
func smallImage(t *testing.T, seed uint64, n int) []byte {
	t.Helper()
	rng := rand.New(rand.NewChaCha8([32]byte{byte(seed), 2}))
	img := make([]byte, n)
	for i := range img {
		img[i] = byte(rng.Uint32())
	}
	return img
}

// TestMeshNonOwner: a change made on the owner is seen at once by a
// command on another node (read-your-writes across the mesh); that node
// answers reads from the catalog and refuses writes, naming the owner,
// without writing anything (no fenced replica, the owner's disk unchanged).
func TestMeshNonOwner(t *testing.T) {
	a := meshMember(t, "site-a", "127.0.0.1", "")
	b := meshMember(t, "site-b", "127.0.0.2", a.home)
	b.ok("join", a.addr())
	for _, h := range []*harness{a, b} {
		eventually(t, "two members alive on "+filepath.Base(h.home), func() (bool, string) {
			n := h.alivePeers()
			return n == 2, fmt.Sprint(n, " alive")
		})
	}
	owner := a.peerID()
	img := smallImage(t, 1, 2<<20)
	file := writeTemp(t, "vm.img", img)

	// Read-your-writes: each new disk is known to b as soon as the
	// import on a returns.
	for i := range 4 {
		name := fmt.Sprintf("vm%d", i)
		a.ok("disk", "import", name, file)
		if d := b.diskInfo(name); d.Owner != owner {
			t.Fatalf("b: disk info %s: owner %q, want %q", name, d.Owner, owner)
		}
	}
	a.ok("replica", "create", "vm0", "snap")
	if out := b.ok("replica", "ls", "vm0"); !strings.Contains(out, "snap") {
		t.Fatalf("b: replica ls vm0:\n%s\nwant the owner's replica snap", out)
	}
	b.wantContent("vm0@snap", img)

	// Writes on the non-owner are refused, naming the owner.
	other := writeTemp(t, "other.img", smallImage(t, 2, 2<<20))
	b.fails(owner, "disk", "import", "vm0", other)
	if r := b.run(smallImage(t, 3, 1<<20), "disk", "import", "vm0", "-"); r.code == 0 || !strings.Contains(r.stderr, owner) {
		t.Fatalf("b: disk import vm0 - : exit %d, stderr %q; want non-zero naming %s", r.code, r.stderr, owner)
	}
	b.fails(owner, "disk", "commit", "vm0")
	b.fails(owner, "replica", "create", "vm0", "mine")
	b.fails(owner, "replica", "restore", "vm0", "snap")
	b.fails(owner, "replica", "rm", "vm0", "snap")
	b.fails(owner, "disk", "acl", "vm0", "--allow", "10.0.0.0/8")
	b.fails(owner, "disk", "rm", "vm0")
	a.wantContent("vm0", img)
	for _, h := range []*harness{a, b} {
		if out := h.ok("replica", "ls", "vm0"); strings.Contains(out, "fenced-") || strings.Contains(out, "mine") {
			t.Fatalf("%s: replica ls vm0:\n%s\nwant no replica made by the refused writes", filepath.Base(h.home), out)
		}
	}

	// What b cannot answer, it says why.
	a.ok("disk", "rm", "vm3")
	b.fails("removed from the mesh by "+owner, "disk", "info", "vm3")
	a.ok("replica", "rm", "vm0", "snap")
	b.fails("removed from the mesh by "+owner, "disk", "export", "vm0@snap", filepath.Join(t.TempDir(), "x.img"))
	if out := b.ok("replica", "ls", "vm0"); strings.Contains(out, "snap") {
		t.Fatalf("b: replica ls vm0 after the owner removed snap:\n%s", out)
	}
	b.fails("not on this node nor in the mesh catalog", "disk", "info", "nosuch")
	b.fails("not on this node nor in the mesh catalog", "replica", "ls", "nosuch")
}
