package node

import (
	"context"
	"errors"
	"fmt"
	"github.com/weft-mesh/weft/api"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

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
	var version uint64
	if s.mesh != nil {
		version = s.mesh.nextSpacesuitVersion(req.Name)
	}
	info, err := s.vols.PublishSpacesuit(r.Context(), req.Name, src, version)
	if err != nil {
		s.fail(w, r, fmt.Errorf("publish %s: %w", req.Name, err))
		return
	}
	if s.mesh != nil {
		s.mesh.announce(r.Context(), catalog.SpacesuitKey(info.Name, info.Version))
		info.Owner = s.mesh.selfStr
	}
	s.log.Info("spacesuit published", "spacesuit", info.Ref, "source", info.Source, "root", info.Root)
	s.writeJSON(w, http.StatusCreated, info)
}

func (s *server) handleListSpacesuits(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, http.StatusOK, s.spacesuits(r.Context()))
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
				sp = volume.SpacesuitInfo{Name: name, Version: version, Ref: ref, Root: rootText(e.Root),
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
		merr := s.mesh.removeRecord(catalog.SpacesuitKey(name, version), "spacesuit "+volume.SpacesuitRef(name, version))
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

// nextSpacesuitVersion is one above every version of name the catalog has
// ever named, removed ones included: a version number is never reused.
func (n *meshNode) nextSpacesuitVersion(name string) uint64 {
	var top uint64
	for _, e := range n.cat.Snapshot() {
		ref, ok := strings.CutPrefix(e.Key, catalog.SpacesuitPrefix)
		if !ok {
			continue
		}
		if nm, v, err := volume.ParseSpacesuitRef(ref); err == nil && nm == name {
			top = max(top, v)
		}
	}
	return top + 1
}

// removeRecord writes a tombstone for key, named what in errors: every
// node that keeps a copy (its creator, the sites it was pushed to) forgets
// it too.
func (n *meshNode) removeRecord(key, what string) error {
	e, ok := n.cat.Get(key)
	if !ok {
		return fmt.Errorf("%s: %w", what, volume.ErrNotFound)
	}
	d, err := n.cat.Delete(key, e.Epoch)
	if err != nil {
		return err
	}
	n.broadcast(d)
	return nil
}

// spacesuitVersion returns the version a record of a spacesuit carries.
func spacesuitVersion(r volume.Record) uint64 {
	v, _ := strconv.ParseUint(r.Replica, 10, 64)
	return v
}

// catalogEntry finds what a ref names in the catalog: a disk ("DISK"), a
// replica ("DISK@REPLICA") or a spacesuit version ("NAME@N").
func (n *meshNode) catalogEntry(ref volume.Ref) (catalog.Entry, bool) {
	if ref.Replica == "" {
		return n.cat.Get(catalog.DiskKey(ref.Disk))
	}
	if e, ok := n.cat.Get(catalog.ReplicaKey(ref.Disk, ref.Replica)); ok {
		return e, true
	}
	if name, v, err := volume.ParseSpacesuitRef(ref.String()); err == nil {
		return n.cat.Get(catalog.SpacesuitKey(name, v))
	}
	return catalog.Entry{}, false
}

// catalogSettle bounds how long a command naming a record waits for it to
// arrive: a replica or spacesuit made a moment ago on another node reaches
// this one by gossip within a few hundred milliseconds, and an operator who
// runs the two commands back to back should not see "not found".
const catalogSettle = 3 * time.Second

// awaitCatalogEntry is catalogEntry that waits up to catalogSettle for the
// record to arrive.
func (n *meshNode) awaitCatalogEntry(ctx context.Context, ref volume.Ref) (catalog.Entry, bool) {
	ctx, cancel := context.WithTimeout(ctx, catalogSettle)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if e, ok := n.catalogEntry(ref); ok {
			return e, true
		}
		select {
		case <-ctx.Done():
			return n.catalogEntry(ref)
		case <-tick.C:
		}
	}
}

// cloneRemote clones a disk, replica or spacesuit this node does not hold
// (transfer.Service.Clone).
func (n *meshNode) cloneRemote(ctx context.Context, src volume.Ref, name string) (volume.DiskInfo, error) {
	return n.transfers.Clone(ctx, src, name)
}
