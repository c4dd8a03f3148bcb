package node

import (
	"context"
	"errors"
	"fmt"
	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/internal/errkind"
	"io"
	"net/http"
	"sort"
	"strconv"

	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

func (s *server) handleListDisks(w http.ResponseWriter, r *http.Request) {
	disks, _, err := listDisks(r.Context(), s.vols, s.mesh)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sort.Slice(disks, func(i, j int) bool { return disks[i].Name < disks[j].Name })
	s.writeJSON(w, http.StatusOK, disks)
}

func (s *server) handleCreateDisk(w http.ResponseWriter, r *http.Request) {
	var req CreateDiskRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if s.mesh != nil {
		if e, ok := s.mesh.cat.Get(catalog.DiskKey(req.Name)); ok {
			s.fail(w, r, errkind.Errorf(volume.ErrExists, "disk %q already exists in the mesh, owned by %s", req.Name, e.Owner))
			return
		}
	}
	if err := s.nameFree(volume.KindDisk, req.Name); err != nil {
		s.fail(w, r, err)
		return
	}
	info, err := s.vols.CreateDisk(r.Context(), volume.DiskSpec{
		Name: req.Name, Size: req.Size, BlockSize: req.BlockSize, Replicas: req.Replicas, Sync: req.Sync, Creator: req.Creator,
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.announce(r.Context(), catalog.DiskKey(info.Name))
	s.log.Info("disk created", "disk", info.Name, "size", info.Size, "block_size", info.BlockSize)
	s.writeJSON(w, http.StatusCreated, apiDiskInfo(info))
}

// handleDiskInfo answers from this node's volumes, or for a disk another
// node owns from its catalog record, or says why it cannot.
func (s *server) handleDiskInfo(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	held, err := s.vols.DiskInfo(r.Context(), name)
	info := apiDiskInfo(held)
	if s.mesh != nil {
		e, ok := s.mesh.cat.Get(catalog.DiskKey(name))
		switch {
		case err == nil:
			info = s.mesh.localDiskInfo(r.Context(), held)
		case ok && errors.Is(err, volume.ErrNotFound):
			info, err = s.mesh.remoteDisk(r.Context(), e), nil
		case errors.Is(err, volume.ErrNotFound):
			err = s.mesh.cl.Missing(volume.Ref{Disk: name})
		}
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, info)
}

// handleRemoveDisk removes a disk that nobody uses on this node; with
// ?force=true, one in use too (forceRemoveDisk).
func (s *server) handleRemoveDisk(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := s.mustOwn(name); err != nil {
		s.fail(w, r, err)
		return
	}
	force, err := queryBool(r, "force")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if _, err := s.vols.Head(name); err != nil {
		s.fail(w, r, err)
		return
	}
	if force {
		s.forceRemoveDisk(w, r, name)
		return
	}
	if users := s.usersAfterGrace(r.Context(), name); len(users) > 0 {
		s.writeError(w, r, &diskInUseError{disk: name, users: users}, http.StatusConflict, codeBusy)
		return
	}
	if err := s.vols.RemoveDisk(r.Context(), name); err != nil {
		s.fail(w, r, err)
		return
	}
	s.announce(r.Context(), catalog.DiskKey(name))
	s.log.Info("disk removed", "disk", name)
	w.WriteHeader(http.StatusNoContent)
}

// forceRemoveDisk removes a disk whoever uses it: it keeps the head as a
// replica (writes refused from the start, so every write that returned is
// in it), then closes the NBD connections to the disk and drops what the
// kernel cached of its open files, which fail from then on.
func (s *server) forceRemoveDisk(w http.ResponseWriter, r *http.Request, name string) {
	users := s.usersOf(name)
	kept, err := s.vols.RemoveDiskKeepingHead(r.Context(), name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// The removal closed the NBD connections and iSCSI sessions of the
	// head (endRefused, the volumes' watcher).
	s.mounts.dropRemoved(name)
	s.announce(r.Context(), catalog.DiskKey(name), catalog.ReplicaKey(name, kept))
	s.log.Warn("disk removed by force", "disk", name, "kept", kept, "users", users)
	s.writeJSON(w, http.StatusOK, RemoveDiskResult{Kept: kept, Users: users})
}

func (s *server) handleCommit(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := s.mustOwn(name); err != nil {
		s.fail(w, r, err)
		return
	}
	info, err := s.vols.Commit(r.Context(), name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.announce(r.Context(), catalog.DiskKey(name))
	s.writeJSON(w, http.StatusOK, apiDiskInfo(info))
}

func (s *server) handleClone(w http.ResponseWriter, r *http.Request) {
	src, err := volume.ParseRef(r.PathValue("ref"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var req CloneRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if s.mesh != nil {
		if e, ok := s.mesh.cat.Get(catalog.DiskKey(req.Name)); ok {
			s.fail(w, r, errkind.Errorf(volume.ErrExists, "disk %q already exists in the mesh, owned by %s", req.Name, e.Owner))
			return
		}
	}
	if err := s.nameFree(volume.KindDisk, req.Name); err != nil {
		s.fail(w, r, err)
		return
	}
	info, err := s.vols.Clone(r.Context(), src, req.Name, req.Creator)
	if errors.Is(err, volume.ErrNotFound) && s.mesh != nil {
		if _, ok := s.mesh.cl.AwaitEntry(r.Context(), src); ok { // else the local error says it best
			info, err = s.mesh.cloneRemote(r.Context(), src, req.Name, req.Creator)
		}
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.announce(r.Context(), catalog.DiskKey(info.Name))
	s.log.Info("disk cloned", "source", src.String(), "disk", info.Name)
	s.writeJSON(w, http.StatusCreated, apiDiskInfo(info))
}

// importSpec is the disk spec of an import request: its name, and the
// block size and replicas its query sets.
func importSpec(r *http.Request) (volume.DiskSpec, error) {
	spec := volume.DiskSpec{Name: r.PathValue("name")}
	q := r.URL.Query()
	var err error
	if v := q.Get("block_size"); v != "" {
		if spec.BlockSize, err = strconv.ParseInt(v, 10, 64); err != nil {
			return spec, invalidf("block_size %q", v)
		}
	}
	if v := q.Get("replicas"); v != "" {
		if spec.Replicas, err = strconv.Atoi(v); err != nil {
			return spec, invalidf("replicas %q", v)
		}
	}
	return spec, nil
}

// handleImport streams the request body into a disk, creating it if absent.
func (s *server) handleImport(w http.ResponseWriter, r *http.Request) {
	spec, err := importSpec(r)
	if err != nil {
		s.failDrain(w, r, err)
		return
	}
	if err := s.mayImport(spec.Name); err != nil {
		s.failDrain(w, r, err)
		return
	}
	info, err := s.vols.Import(r.Context(), spec, r.Body)
	if err != nil {
		s.failDrain(w, r, err)
		return
	}
	s.announce(r.Context(), catalog.DiskKey(info.Name))
	s.log.Info("disk imported", "disk", info.Name, "size", info.Size, "used", info.UsedBytes)
	s.writeJSON(w, http.StatusOK, apiDiskInfo(info))
}

// failDrain reads what is left of the request body before answering, so
// that a client still sending an import gets the error response instead of
// a broken pipe.
func (s *server) failDrain(w http.ResponseWriter, r *http.Request, err error) {
	_, _ = io.Copy(io.Discard, r.Body)
	s.fail(w, r, err)
}

// handleExport streams a disk head or replica in the export format.
func (s *server) handleExport(w http.ResponseWriter, r *http.Request) {
	ref, err := volume.ParseRef(r.PathValue("ref"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	v, err := openView(r.Context(), s.vols, s.mesh, ref)
	if err != nil {
		s.fail(w, r, fmt.Errorf("export %s: %w", ref, err))
		return
	}
	defer v.Close()
	w.Header().Set("Content-Type", "application/vnd.weft.export")
	w.Header().Set("X-Weft-Size", strconv.FormatInt(v.Size(), 10))
	w.WriteHeader(http.StatusOK)
	if err := s.export(r.Context(), w, ref, v); err != nil {
		s.log.Warn("export failed", "ref", ref.String(), "err", err)
	}
}

func (s *server) export(ctx context.Context, w io.Writer, ref volume.Ref, v *volume.View) error {
	enc, err := api.NewExportWriter(w, v.Size(), v.BlockSize())
	if err != nil {
		return err
	}
	bufs := volume.NewBlockBuffers(exportBuffers)
	err = v.ForEachBlock(ctx, bufs, func(off int64, p []byte) error {
		err := enc.Data(off, p)
		bufs.Put(p) // written out
		return err
	})
	if err != nil {
		if s.mesh != nil {
			err = s.mesh.cl.Unavailable(ref, err)
		}
		_, code := classify(err)
		if ferr := enc.Fail(errorMessage(err, code), code); ferr != nil {
			return ferr
		}
		return err
	}
	return enc.Finish()
}
