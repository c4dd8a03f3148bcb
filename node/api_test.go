package node

import (
	"context"
	"encoding/json"
	"maps"
	"testing"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/volume"
)

// TestAPILimitsMatchVolume: the CLI checks flags against api's limits; the
// daemon's volumes enforce volume's. They must be the same numbers.
func TestAPILimitsMatchVolume(t *testing.T) {
	pairs := [][2]int64{
		{api.MinBlockSize, volume.MinBlockSize}, {api.MaxBlockSize, volume.MaxBlockSize},
		{api.DefaultBlockSize, volume.DefaultBlockSize}, {api.DefaultReplicas, volume.DefaultReplicas},
		{api.MaxReplicas, volume.MaxReplicas},
	}
	for i, p := range pairs {
		if p[0] != p[1] {
			t.Errorf("limit %d: api %d, volume %d", i, p[0], p[1])
		}
	}
}

// TestAPIDiskInfoAlone: on a node without a mesh, a disk that wants more
// than one copy has every block under-replicated (this node holds the one
// copy there is), and the mesh's fields stay out of the JSON.
func TestAPIDiskInfoAlone(t *testing.T) {
	info := volume.DiskInfo{Name: "web", Size: 1 << 20, BlockSize: 64 << 10, Replicas: 2, UsedBytes: 3 * 64 << 10}
	d := apiDiskInfo(info)
	if d.UnderReplicated != 3 {
		t.Errorf("under-replicated %d, want 3", d.UnderReplicated)
	}
	info.Replicas = 1
	if d := apiDiskInfo(info); d.UnderReplicated != 0 {
		t.Errorf("one replica wanted: under-replicated %d, want 0", d.UnderReplicated)
	}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"owner", "epoch"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s in the JSON of a disk alone: %s", k, b)
		}
	}
}

// TestAPIRootsAsText: roots are CIDs inside the daemon and CID text in
// its answers, "" for an empty disk, never go-cid's {"/": ...} form.
func TestAPIRootsAsText(t *testing.T) {
	root, err := cid.V1Builder{Codec: cid.DagCBOR, MhType: mh.SHA2_256}.Sum([]byte("root"))
	if err != nil {
		t.Fatal(err)
	}
	answers := []struct {
		v    any
		want string
	}{
		{apiDiskInfo(volume.DiskInfo{Name: "empty"}), ""},
		{apiDiskInfo(volume.DiskInfo{Name: "web", Root: root}), root.String()},
		{apiReplicaInfo(volume.ReplicaInfo{Disk: "web", Name: "r1", Root: root}), root.String()},
		{apiSpacesuitInfo(volume.SpacesuitInfo{Name: "img", Version: 1, Ref: "img@1", Root: root}), root.String()},
	}
	for _, a := range answers {
		b, err := json.Marshal(a.v)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m["root"] != a.want {
			t.Errorf("root %v in %s, want %q", m["root"], b, a.want)
		}
	}
}

// TestAPICloneOrigin: a clone's info names what it was cloned from (a
// disk's head or a replica); a disk made empty names nothing. Made or
// cloned, a disk's info names the creator its client gave. The volume
// package's TestCloneRecordsItsOrigin checks it survives a restart.
func TestAPICloneOrigin(t *testing.T) {
	cl, _ := startNode(t)
	ctx := context.Background()
	if _, err := cl.CreateDisk(ctx, api.DiskSpec{Name: "d", Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	// The creator a client gives comes back too.
	if _, err := cl.CreateDisk(ctx, api.DiskSpec{Name: "by-csi", Size: 1 << 20, Creator: api.CreatorCSI}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreateReplica(ctx, "d", "r"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, creator string
		ref           api.Ref
	}{{"of-head", "", api.Ref{Disk: "d"}}, {"of-replica", api.CreatorCSI, api.Ref{Disk: "d", Replica: "r"}}} {
		if _, err := cl.Clone(ctx, c.ref, c.name, c.creator); err != nil {
			t.Fatal(err)
		}
	}
	disks, err := cl.ListDisks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, d := range disks {
		got[d.Name] = d.Origin + " by " + d.Creator
	}
	if want := map[string]string{"d": " by ", "by-csi": " by csi", "of-head": "d by ", "of-replica": "d@r by csi"}; !maps.Equal(got, want) {
		t.Fatalf("origins and creators %q, want %q", got, want)
	}
}
