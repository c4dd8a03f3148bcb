package node

import (
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

// nameFree refuses to make a want (a disk or a spacesuit) named name
// when the mesh's catalog names something of the other kind by it: disks
// and spacesuits share one namespace, since the doors resolve names and
// a disk's access rules must never apply to a spacesuit (volume.Kind).
// The volume manager checks this node's own records; this, the other
// nodes'. It wraps volume.ErrExists.
func (s *server) nameFree(want volume.Kind, name string) error {
	if s.mesh == nil {
		return nil
	}
	switch want {
	case volume.KindDisk:
		if len(s.mesh.cat.List(catalog.SpacesuitPrefix+name+"@")) > 0 {
			return volume.NameTaken(want, name, volume.KindSpacesuit)
		}
	case volume.KindSpacesuit:
		if _, ok := s.mesh.cat.Get(catalog.DiskKey(name)); ok {
			return volume.NameTaken(want, name, volume.KindDisk)
		}
	}
	return nil
}

// mayImport refuses an import into disk name unless this node owns it
// (or it is new) and no spacesuit of the mesh has the name.
func (s *server) mayImport(name string) error {
	if err := s.mustOwn(name); err != nil {
		return err
	}
	return s.nameFree(volume.KindDisk, name)
}
