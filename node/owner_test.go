package node

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

// Peer IDs in their base58 form (shape only).
const (
	testSelf  = "12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	testOwner = "12D3KooWBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
)

// catalogOnlyNode is a mesh node with a catalog and empty volumes and no
// network: enough for the answers a node gives from its catalog.
func catalogOnlyNode(t *testing.T) *meshNode {
	t.Helper()
	cfg := volume.DefaultConfig()
	cfg.Dir, cfg.Store = t.TempDir(), blockstore.NewMemory()
	vols, err := volume.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vols.Close() })
	return &meshNode{selfStr: testSelf, cat: catalog.New(testSelf), vols: vols, log: slog.New(slog.DiscardHandler)}
}

func put(t *testing.T, n *meshNode, e catalog.Entry) {
	t.Helper()
	if _, err := n.cat.Put(e); err != nil {
		t.Fatalf("put %s: %v", e.Key, err)
	}
}

func TestCatalogReplicas(t *testing.T) {
	n := catalogOnlyNode(t)
	root := blockstore.NewBlock(0x55, []byte("a block")).CID
	put(t, n, catalog.Entry{Key: catalog.DiskKey("vm"), Owner: testOwner, Epoch: 1, Size: 1 << 20, BlockSize: 65536, Replicas: 2})
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	put(t, n, catalog.Entry{Key: catalog.ReplicaKey("vm", "old"), Root: root, Owner: testOwner, Epoch: 1, Size: 1 << 20, BlockSize: 65536, Created: t0})
	put(t, n, catalog.Entry{Key: catalog.ReplicaKey("vm", "new"), Root: root, Owner: testOwner, Epoch: 1, Size: 1 << 20, BlockSize: 65536, Created: t0.Add(time.Hour)})
	held := volume.ReplicaInfo{Disk: "vm", Name: "new", Root: root.String(), UsedBytes: 4096, Created: t0.Add(time.Hour)}
	got, err := n.catalogReplicas(context.Background(), "vm", []volume.ReplicaInfo{held})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "old" || got[1].Name != "new" {
		t.Fatalf("got %+v, want old then new", got)
	}
	if got[0].Root != root.String() || got[0].Size != 1<<20 {
		t.Errorf("replica old: got %+v, want the catalog's root and size", got[0])
	}
	if got[1].UsedBytes != 4096 {
		t.Errorf("replica new: got used %d, want the local copy's 4096", got[1].UsedBytes)
	}
	if _, err := n.catalogReplicas(context.Background(), "nosuch", nil); !errors.Is(err, volume.ErrNotFound) {
		t.Errorf("unknown disk: got %v, want ErrNotFound", err)
	}
}

func TestMissingSaysWhy(t *testing.T) {
	n := catalogOnlyNode(t)
	put(t, n, catalog.Entry{Key: catalog.DiskKey("gone"), Owner: testSelf, Epoch: 1, Size: 1 << 20, BlockSize: 65536, Replicas: 1})
	if _, err := n.cat.Delete(catalog.DiskKey("gone"), 1); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ref  volume.Ref
		want string
	}{
		{volume.Ref{Disk: "gone"}, `disk "gone" was removed from the mesh by ` + testSelf},
		{volume.Ref{Disk: "never"}, `disk "never": not on this node nor in the mesh catalog`},
		{volume.Ref{Disk: "vm", Replica: "snap"}, `replica "vm@snap": not on this node nor in the mesh catalog`},
		{volume.Ref{Disk: "ubuntu", Replica: "3"}, `replica or spacesuit version "ubuntu@3": not on`},
	} {
		err := n.missing(c.ref)
		if !errors.Is(err, volume.ErrNotFound) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("missing(%s): got %v, want ErrNotFound saying %q", c.ref, err, c.want)
		}
	}
}

// TestNotOwnerError: the refusal names the owner and the way out, maps to
// 409 not_owner, and the client's error matches ErrNotOwner.
func TestNotOwnerError(t *testing.T) {
	for _, c := range []struct {
		alive bool
		want  string
	}{
		{true, `disk "vm": owned by ` + testOwner + "; run it there, or move it here first with `weft disk move vm --to " + testSelf + "` on " + testOwner},
		{false, `disk "vm": owned by ` + testOwner + ", which is not alive; take it here first with `weft disk take vm`"},
	} {
		err := error(&notOwnerError{disk: "vm", owner: testOwner, self: testSelf, alive: c.alive})
		if err.Error() != c.want {
			t.Errorf("got %q, want %q", err, c.want)
		}
		status, code := classify(err)
		if status != http.StatusConflict || code != codeNotOwner {
			t.Errorf("classify: got %d %s, want 409 %s", status, code, codeNotOwner)
		}
		if api := (&APIError{Status: status, Code: code, Message: err.Error()}); !errors.Is(api, ErrNotOwner) {
			t.Errorf("APIError %+v does not match ErrNotOwner", api)
		}
	}
}
