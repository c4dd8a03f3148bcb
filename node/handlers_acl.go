package node

import (
	"fmt"
	"net/http"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/volume"
)

// handleSetAllow replaces a disk's list of allowed NBD client networks.
func (s *server) handleSetAllow(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req AllowRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.mustOwn(name); err != nil {
		s.fail(w, r, err)
		return
	}
	info, err := s.vols.SetAllow(r.Context(), name, req.Allow)
	if err != nil {
		s.fail(w, r, fmt.Errorf("disk %s: set allow-list: %w", name, err))
		return
	}
	s.log.Info("disk allow-list set", "disk", name, "allow", info.Allow)
	s.writeJSON(w, http.StatusOK, apiDiskInfo(info))
}

// handleSetInitiators replaces a disk's list of allowed iSCSI initiators.
func (s *server) handleSetInitiators(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req api.InitiatorsRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.mustOwn(name); err != nil {
		s.fail(w, r, err)
		return
	}
	info, err := s.vols.SetInitiators(r.Context(), name, req.Initiators)
	if err != nil {
		s.fail(w, r, fmt.Errorf("disk %s: set initiators: %w", name, err))
		return
	}
	s.log.Info("disk iscsi initiators set", "disk", name, "initiators", info.Initiators)
	s.writeJSON(w, http.StatusOK, apiDiskInfo(info))
}

// handleSetCHAP sets or clears a disk's iSCSI CHAP secrets. The secrets
// are never logged.
func (s *server) handleSetCHAP(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req api.CHAPRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.mustOwn(name); err != nil {
		s.fail(w, r, err)
		return
	}
	var c *volume.CHAP
	if req.User != "" || req.Secret != "" || req.TargetUser != "" || req.TargetSecret != "" {
		c = &volume.CHAP{User: req.User, Secret: req.Secret, TargetUser: req.TargetUser, TargetSecret: req.TargetSecret}
	}
	info, err := s.vols.SetCHAP(r.Context(), name, c)
	if err != nil {
		s.fail(w, r, fmt.Errorf("disk %s: set chap: %w", name, err))
		return
	}
	s.log.Info("disk iscsi chap set", "disk", name, "user", info.CHAPUser, "target_user", info.CHAPTargetUser)
	s.writeJSON(w, http.StatusOK, apiDiskInfo(info))
}
