package node

import (
	"context"
	"errors"
	"fmt"
	"github.com/weft-mesh/weft/api"
	"net/http"
	"sort"
	"strings"

	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

// PublishRequest is api.PublishRequest.
type PublishRequest = api.PublishRequest

func (s *server) handlePublish(w http.ResponseWriter, r *http.Request) {
	var req PublishRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	src, err := volume.ParseRef(req.Source)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.nameFree(volume.KindSpacesuit, req.Name); err != nil {
		s.fail(w, r, fmt.Errorf("publish %s: %w", req.Name, err))
		return
	}
	var version uint64
	if s.mesh != nil {
		version = s.mesh.cl.NextSpacesuitVersion(req.Name)
	}
	info, err := s.vols.PublishSpacesuit(r.Context(), req.Name, src, version)
	if err != nil {
		s.fail(w, r, fmt.Errorf("publish %s: %w", req.Name, err))
		return
	}
	if s.mesh != nil {
		s.announce(r.Context(), catalog.SpacesuitKey(info.Name, info.Version))
		info.Owner = s.mesh.selfStr
	}
	s.log.Info("spacesuit published", "spacesuit", info.Ref, "source", info.Source, "root", info.Root)
	s.writeJSON(w, http.StatusCreated, apiSpacesuitInfo(info))
}

func (s *server) handleListSpacesuits(w http.ResponseWriter, r *http.Request) {
	sps := s.spacesuits(r.Context())
	out := make([]api.SpacesuitInfo, 0, len(sps))
	for _, sp := range sps {
		out = append(out, apiSpacesuitInfo(sp))
	}
	s.writeJSON(w, http.StatusOK, out)
}

// spacesuits lists the local versions and, in a mesh, every version the
// catalog names.
func (s *server) spacesuits(ctx context.Context) []volume.SpacesuitInfo {
	byRef := map[string]volume.SpacesuitInfo{}
	for _, sp := range s.vols.ListSpacesuits(ctx) {
		byRef[sp.Ref] = sp
	}
	if s.mesh != nil {
		for _, e := range s.mesh.cat.List(catalog.SpacesuitPrefix) {
			ref := strings.TrimPrefix(e.Key, catalog.SpacesuitPrefix)
			name, version, err := volume.ParseSpacesuitRef(ref)
			if err != nil {
				continue
			}
			sp, ok := byRef[ref]
			if !ok {
				sp = volume.SpacesuitInfo{Name: name, Version: version, Ref: ref, Root: e.Root,
					Size: e.Size, BlockSize: e.BlockSize, Created: e.Created}
			}
			sp.Owner = e.Owner
			byRef[ref] = sp
		}
	}
	out := make([]volume.SpacesuitInfo, 0, len(byRef))
	for _, sp := range byRef {
		out = append(out, sp)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Version < out[j].Version
	})
	return out
}

func (s *server) handleRemoveSpacesuit(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("ref")
	name, version, err := volume.ParseSpacesuitRef(ref)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	err = s.vols.RemoveSpacesuit(r.Context(), name, version)
	if s.mesh != nil && (err == nil || errors.Is(err, volume.ErrNotFound)) {
		// A tombstone tells every node that keeps a copy (the publisher,
		// the sites it was pushed to) to forget it too. A version the
		// catalog never named (one of an empty disk) was only here, and
		// removing it here is all there is to do.
		merr := s.mesh.cl.Remove(catalog.SpacesuitKey(name, version), "spacesuit "+volume.SpacesuitRef(name, version))
		if err != nil || !errors.Is(merr, volume.ErrNotFound) {
			err = merr
		}
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.announce(r.Context(), catalog.SpacesuitKey(name, version))
	s.log.Info("spacesuit removed", "spacesuit", ref)
	w.WriteHeader(http.StatusNoContent)
}

// cloneRemote clones a disk, replica or spacesuit this node does not hold
// (transfer.Service.Clone).
func (n *meshNode) cloneRemote(ctx context.Context, src volume.Ref, name, creator string) (volume.DiskInfo, error) {
	return n.transfers.Clone(ctx, src, name, creator)
}
