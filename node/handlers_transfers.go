package node

import (
	"context"
	"fmt"
	"github.com/weft-mesh/weft/api"
	"net/http"

	"github.com/weft-mesh/weft/mesh/meshnet"
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
	job, err := s.mesh.startJournaled(r.Context(), newTransferID(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusCreated, job.snapshot())
}

// startTransfer starts req under id: a push (Targets) or a pull (From).
func (n *meshNode) startTransfer(ctx context.Context, id string, req TransferRequest) (*transferJob, error) {
	switch {
	case len(req.Targets) > 0 && req.From == "":
		return n.push(ctx, id, req.Source, req.Targets, req.Options)
	case len(req.Targets) == 0 && req.From != "":
		return n.pullFrom(ctx, id, req)
	}
	return nil, invalidf("transfer: give targets (push) or from (pull), not both")
}

// pullFrom starts a pull of req.Source from a peer, or from every live
// member of a site.
func (n *meshNode) pullFrom(ctx context.Context, id string, req TransferRequest) (*transferJob, error) {
	if err := checkTransferOptions(req.Options); err != nil {
		return nil, err
	}
	ref, err := volume.ParseRef(req.Source)
	if err != nil {
		return nil, err
	}
	e, ok := n.awaitCatalogEntry(ctx, ref)
	switch {
	case !ok:
		return nil, kindf(volume.ErrNotFound, "pull %s: not in the mesh's catalog", req.Source)
	case !e.Root.Defined():
		return nil, kindf(volume.ErrInvalid, "pull %s: it is empty: nothing to transfer", req.Source)
	}
	sources := n.sitePeers(req.From, e.Root)
	if len(sources) == 0 { // not a site: a peer ID or a multiaddr
		p, err := n.peerFor(req.From, e.Root)
		if err != nil {
			return nil, err
		}
		sources = []meshnet.PeerID{p}
	}
	job, _, err := n.pull(ctx, "pull", id, ref, e, sources, req.Options)
	return job, err
}

func (s *server) handleListTransfers(w http.ResponseWriter, r *http.Request) {
	if s.mesh == nil {
		s.writeJSON(w, http.StatusOK, []TransferInfo{})
		return
	}
	s.writeJSON(w, http.StatusOK, s.mesh.transfers.list())
}

func (s *server) handleTransferInfo(w http.ResponseWriter, r *http.Request) {
	if !s.meshOr(w, r) {
		return
	}
	j, ok := s.mesh.transfers.get(r.PathValue("id"))
	if !ok {
		s.fail(w, r, fmt.Errorf("transfer %q: %w", r.PathValue("id"), volume.ErrNotFound))
		return
	}
	s.writeJSON(w, http.StatusOK, j.snapshot())
}

func (s *server) handleCancelTransfer(w http.ResponseWriter, r *http.Request) {
	if !s.meshOr(w, r) {
		return
	}
	id := r.PathValue("id")
	if err := s.mesh.transfers.cancelJob(id); err != nil {
		s.fail(w, r, err)
		return
	}
	j, _ := s.mesh.transfers.get(id)
	select {
	case <-j.done:
	case <-r.Context().Done():
	}
	s.log.Info("transfer cancelled", "id", id)
	s.writeJSON(w, http.StatusOK, j.snapshot())
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
	p, err := s.mesh.addPolicy(req)
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
	s.writeJSON(w, http.StatusOK, s.mesh.policies())
}

func (s *server) handleRemovePolicy(w http.ResponseWriter, r *http.Request) {
	if !s.meshOr(w, r) {
		return
	}
	res, err := s.mesh.removePolicy(r.PathValue("disk"), r.PathValue("site"), r.URL.Query().Get("mode"))
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
	info, err := s.mesh.recoverDisk(r.Context(), r.PathValue("name"), req.From)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Warn("disk recovered from its replication", "disk", info.Name, "site", req.From, "root", info.Root)
	s.writeJSON(w, http.StatusOK, info)
}
