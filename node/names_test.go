package node

import (
	"errors"
	"testing"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/volume"
)

// nameFree sees the other nodes' disks and spacesuits through the mesh's
// catalog: a spacesuit another node published keeps a disk of its name
// from being made here, and the reverse; a removed one (tombstone) does
// not, and neither does a name that only starts like it.
func TestNameFreeSeesTheMesh(t *testing.T) {
	self, other := meshnet.TestID("self").String(), meshnet.TestID("other").String()
	cat := catalog.New(self)
	root := blockstore.Sum(blockstore.CodecRaw, []byte("image"))
	for _, e := range []catalog.Entry{
		{Key: catalog.SpacesuitKey("image", 3), Root: root, Owner: other},
		{Key: catalog.DiskKey("gold"), Owner: other},
		{Key: catalog.SpacesuitKey("gone", 1), Root: root, Owner: other},
	} {
		if _, err := cat.Put(e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cat.Delete(catalog.SpacesuitKey("gone", 1), 0); err != nil {
		t.Fatal(err)
	}
	s := &server{mesh: &meshNode{cat: cat}}
	for _, c := range []struct {
		want  volume.Kind
		name  string
		taken bool
	}{
		{volume.KindDisk, "image", true},
		{volume.KindSpacesuit, "gold", true},
		{volume.KindDisk, "gold", false}, // the same kind: the disk checks decide
		{volume.KindSpacesuit, "image", false},
		{volume.KindDisk, "gone", false},
		{volume.KindDisk, "imag", false},
	} {
		err := s.nameFree(c.want, c.name)
		if got := errors.Is(err, volume.ErrExists); got != c.taken {
			t.Errorf("nameFree(%v, %q): got %v, want taken %v", c.want, c.name, err, c.taken)
		}
	}
	if err := (&server{}).nameFree(volume.KindDisk, "image"); err != nil {
		t.Errorf("nameFree without a mesh: got %v, want nil", err)
	}
}
