package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/volume"
)

func TestCatalogReplicas(t *testing.T) {
	n := newTestNode(t, newTestHub(t), "b")
	owner := meshnet.TestID("owner").String()
	root := blockstore.NewBlock(0x55, []byte("a block")).CID
	n.put(t, catalog.Entry{Key: catalog.DiskKey("vm"), Owner: owner, Epoch: 1, Size: 1 << 20, BlockSize: 65536, Replicas: 2})
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	n.put(t, catalog.Entry{Key: catalog.ReplicaKey("vm", "old"), Root: root, Owner: owner, Epoch: 1, Size: 1 << 20, BlockSize: 65536, Created: t0})
	n.put(t, catalog.Entry{Key: catalog.ReplicaKey("vm", "new"), Root: root, Owner: owner, Epoch: 1, Size: 1 << 20, BlockSize: 65536, Created: t0.Add(time.Hour)})
	held := volume.ReplicaInfo{Disk: "vm", Name: "new", Root: root, UsedBytes: 4096, Created: t0.Add(time.Hour)}
	got, err := n.CatalogReplicas(context.Background(), "vm", []volume.ReplicaInfo{held})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "old" || got[1].Name != "new" {
		t.Fatalf("got %+v, want old then new", got)
	}
	if got[0].Root != root || got[0].Size != 1<<20 {
		t.Errorf("replica old: got %+v, want the catalog's root and size", got[0])
	}
	if got[1].UsedBytes != 4096 {
		t.Errorf("replica new: got used %d, want the local copy's 4096", got[1].UsedBytes)
	}
	if _, err := n.CatalogReplicas(context.Background(), "nosuch", nil); !errors.Is(err, volume.ErrNotFound) {
		t.Errorf("unknown disk: got %v, want ErrNotFound", err)
	}
}

func TestMissingSaysWhy(t *testing.T) {
	n := newTestNode(t, newTestHub(t), "b")
	n.put(t, catalog.Entry{Key: catalog.DiskKey("gone"), Owner: n.selfStr, Epoch: 1, Size: 1 << 20, BlockSize: 65536, Replicas: 1})
	if _, err := n.cat.Delete(catalog.DiskKey("gone"), 1); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ref  volume.Ref
		want string
	}{
		{volume.Ref{Disk: "gone"}, `disk "gone" was removed from the mesh by ` + n.selfStr},
		{volume.Ref{Disk: "never"}, `disk "never": not on this node nor in the mesh catalog`},
		{volume.Ref{Disk: "vm", Replica: "snap"}, `replica "vm@snap": not on this node nor in the mesh catalog`},
		{volume.Ref{Disk: "ubuntu", Replica: "3"}, `replica or spacesuit version "ubuntu@3": not on`},
	} {
		err := n.Missing(c.ref)
		if !errors.Is(err, volume.ErrNotFound) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Missing(%s): got %v, want ErrNotFound saying %q", c.ref, err, c.want)
		}
		if _, err := n.Open(context.Background(), c.ref); !errors.Is(err, volume.ErrNotFound) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%s): got %v, want Missing's error", c.ref, err)
		}
	}
}

// The refusal to write a disk owned elsewhere names the owner and the way
// out, and matches ErrNotOwner.
func TestCheckOwner(t *testing.T) {
	hub := newTestHub(t)
	n := newTestNode(t, hub, "b")
	owner := hub.join("owner")
	n.put(t, catalog.Entry{Key: catalog.DiskKey("vm"), Owner: owner.Self().String(), Epoch: 1, Size: 1 << 20, BlockSize: 65536, Replicas: 1})
	if err := n.CheckOwner("new"); err != nil {
		t.Errorf("a disk the catalog does not name: %v", err)
	}
	for _, c := range []struct {
		down bool
		want string
	}{
		{false, `disk "vm": owned by ` + owner.Self().String() + "; run it there, or move it here first with `weft disk move vm --to " + n.selfStr + "` on " + owner.Self().String()},
		{true, `disk "vm": owned by ` + owner.Self().String() + ", which is not alive; take it here first with `weft disk take vm`"},
	} {
		hub.setDown(owner.Self(), c.down)
		err := n.CheckOwner("vm")
		if !errors.Is(err, ErrNotOwner) || err.Error() != c.want {
			t.Errorf("got %v, want ErrNotOwner saying %q", err, c.want)
		}
	}
}
