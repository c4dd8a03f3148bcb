package node

import (
	"errors"
	"github.com/weft-mesh/weft/api"
	"net/http"

	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

// handleListReplicas lists a disk's replicas: from this node's volumes
// when it owns the disk, else from the catalog (with the details of the
// copies held here).
func (s *server) handleListReplicas(w http.ResponseWriter, r *http.Request) {
	disk := r.PathValue("name")
	reps, err := s.vols.ListReplicas(r.Context(), disk)
	if s.mesh != nil && (errors.Is(err, volume.ErrNotFound) || err == nil && s.mesh.cl.CheckOwner(disk) != nil) {
		reps, err = s.mesh.cl.CatalogReplicas(r.Context(), disk, reps)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]api.ReplicaInfo, 0, len(reps))
	for _, rep := range reps {
		out = append(out, apiReplicaInfo(rep))
	}
	s.writeJSON(w, http.StatusOK, out)
}

// handleReplicaDisks lists the disks of this node that have replicas,
// removed disks whose replicas remain included (ListDisks leaves those
// out).
func (s *server) handleReplicaDisks(w http.ResponseWriter, r *http.Request) {
	disks, err := s.vols.ReplicaDisks(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, disks)
}

func (s *server) handleCreateReplica(w http.ResponseWriter, r *http.Request) {
	var req CreateReplicaRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	disk := r.PathValue("name")
	if err := s.mustOwn(disk); err != nil {
		s.fail(w, r, err)
		return
	}
	rep, err := s.vols.CreateReplica(r.Context(), disk, req.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.announce(r.Context(), catalog.DiskKey(disk), catalog.ReplicaKey(disk, rep.Name))
	s.log.Info("replica created", "disk", disk, "replica", rep.Name, "root", rep.Root)
	s.writeJSON(w, http.StatusCreated, apiReplicaInfo(rep))
}

func (s *server) handleRestore(w http.ResponseWriter, r *http.Request) {
	disk, rep := r.PathValue("name"), r.PathValue("replica")
	if err := s.mustOwn(disk); err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.vols.Restore(r.Context(), disk, rep)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.announce(r.Context(), catalog.DiskKey(disk), catalog.ReplicaKey(disk, res.Backup))
	s.log.Info("disk restored", "disk", disk, "replica", rep, "backup", res.Backup)
	s.writeJSON(w, http.StatusOK, api.RestoreResult{Disk: apiDiskInfo(res.Disk), Backup: res.Backup})
}

func (s *server) handleRemoveReplica(w http.ResponseWriter, r *http.Request) {
	disk, rep := r.PathValue("name"), r.PathValue("replica")
	if err := s.mustOwn(disk); err != nil {
		s.fail(w, r, err)
		return
	}
	key := catalog.ReplicaKey(disk, rep)
	var err error
	if s.mesh != nil {
		// The owner's removal counts everywhere: the tombstone tells the
		// sites holding a copy to forget it too.
		err = s.mesh.cl.RemoveReplica(r.Context(), disk, rep)
	} else {
		err = s.vols.RemoveReplica(r.Context(), disk, rep)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.announce(r.Context(), key)
	s.log.Info("replica removed", "disk", disk, "replica", rep)
	w.WriteHeader(http.StatusNoContent)
}
