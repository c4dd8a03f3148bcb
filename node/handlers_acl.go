package node

import (
	"fmt"
	"net/http"
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
