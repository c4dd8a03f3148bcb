package node

import (
	"fmt"
	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/mesh/catalog"
	"net/http"

	"github.com/weft-mesh/weft/volume"
)

// TransferRequest is api.TransferRequest.
type TransferRequest = api.TransferRequest

func (s *server) handleStartTransfer(w http.ResponseWriter, r *http.Request) {
	if !s.meshOr(w, r) {
		return
	}
	var req TransferRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	job, err := s.mesh.transfers.Start(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusCreated, job.Info())
}

func (s *server) handleListTransfers(w http.ResponseWriter, r *http.Request) {
	if s.mesh == nil {
		s.writeJSON(w, http.StatusOK, []TransferInfo{})
		return
	}
	s.writeJSON(w, http.StatusOK, s.mesh.transfers.List())
}

func (s *server) handleTransferInfo(w http.ResponseWriter, r *http.Request) {
	if !s.meshOr(w, r) {
		return
	}
	j, ok := s.mesh.transfers.Get(r.PathValue("id"))
	if !ok {
		s.fail(w, r, fmt.Errorf("transfer %q: %w", r.PathValue("id"), volume.ErrNotFound))
		return
	}
	s.writeJSON(w, http.StatusOK, j.Info())
}

func (s *server) handleCancelTransfer(w http.ResponseWriter, r *http.Request) {
	if !s.meshOr(w, r) {
		return
	}
	id := r.PathValue("id")
	if err := s.mesh.transfers.Cancel(id); err != nil {
		s.fail(w, r, err)
		return
	}
	j, _ := s.mesh.transfers.Get(id)
	select {
	case <-j.Done():
	case <-r.Context().Done():
	}
	s.log.Info("transfer cancelled", "id", id)
	s.writeJSON(w, http.StatusOK, j.Info())
}

func (s *server) handleReplicate(w http.ResponseWriter, r *http.Request) {
	if !s.meshOr(w, r) {
		return
	}
	var req ReplicateRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	p, err := s.mesh.transfers.AddPolicy(req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("replication policy set", "disk", p.Disk, "site", p.Site, "mode", p.Mode, "every", p.Every)
	s.writeJSON(w, http.StatusOK, p)
}

func (s *server) handleListPolicies(w http.ResponseWriter, r *http.Request) {
	if s.mesh == nil {
		s.writeJSON(w, http.StatusOK, []Policy{})
		return
	}
	s.writeJSON(w, http.StatusOK, s.mesh.transfers.Policies())
}

func (s *server) handleRemovePolicy(w http.ResponseWriter, r *http.Request) {
	if !s.meshOr(w, r) {
		return
	}
	res, err := s.mesh.transfers.RemovePolicy(r.PathValue("disk"), r.PathValue("site"), r.URL.Query().Get("mode"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("replication policy removed", "disk", res.Policy.Disk, "site", res.Policy.Site, "mode", res.Policy.Mode, "kept", len(res.Kept))
	s.writeJSON(w, http.StatusOK, res)
}

// RecoverRequest is api.RecoverRequest.
type RecoverRequest = api.RecoverRequest

func (s *server) handleRecover(w http.ResponseWriter, r *http.Request) {
	if !s.meshOr(w, r) {
		return
	}
	var req RecoverRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.mesh.transfers.Recover(r.Context(), r.PathValue("name"), req.From)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	keys := []string{catalog.DiskKey(res.Disk.Name)}
	if res.Backup != "" {
		keys = append(keys, catalog.ReplicaKey(res.Disk.Name, res.Backup))
	}
	s.announce(r.Context(), keys...)
	s.log.Warn("disk recovered from its replication", "disk", res.Disk.Name, "site", req.From, "root", res.Disk.Root, "backup", res.Backup)
	s.writeJSON(w, http.StatusOK, apiDiskInfo(res.Disk))
}
