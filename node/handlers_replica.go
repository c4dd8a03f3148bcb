package node

import (
	"net/http"

	"github.com/weft-mesh/weft/volume"
)

func (s *server) handleListReplicas(w http.ResponseWriter, r *http.Request) {
	reps, err := s.vols.ListReplicas(r.Context(), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if reps == nil {
		reps = []volume.ReplicaInfo{}
	}
	s.writeJSON(w, http.StatusOK, reps)
}

func (s *server) handleCreateReplica(w http.ResponseWriter, r *http.Request) {
	var req CreateReplicaRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	disk := r.PathValue("name")
	rep, err := s.vols.CreateReplica(r.Context(), disk, req.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("replica created", "disk", disk, "replica", rep.Name, "root", rep.Root)
	s.writeJSON(w, http.StatusCreated, rep)
}

func (s *server) handleRestore(w http.ResponseWriter, r *http.Request) {
	disk, rep := r.PathValue("name"), r.PathValue("replica")
	res, err := s.vols.Restore(r.Context(), disk, rep)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("disk restored", "disk", disk, "replica", rep, "backup", res.Backup)
	s.writeJSON(w, http.StatusOK, res)
}

func (s *server) handleRemoveReplica(w http.ResponseWriter, r *http.Request) {
	disk, rep := r.PathValue("name"), r.PathValue("replica")
	if err := s.vols.RemoveReplica(r.Context(), disk, rep); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("replica removed", "disk", disk, "replica", rep)
	w.WriteHeader(http.StatusNoContent)
}
