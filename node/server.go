package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/weft-mesh/weft/api"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/volume"
)

// maxJSONBody bounds the JSON request bodies the API accepts.
const maxJSONBody = 64 << 10

// server holds what the local API handlers need.
type server struct {
	cfg     Config
	id      Identity
	store   blockstore.Store
	vols    *volume.Manager
	log     *slog.Logger
	started time.Time
	nbd     *nbdService
	iscsi   *iscsiService
	mounts  *mountTable
	mesh    *meshNode // nil when the node runs alone
	// doors are asked who uses a disk before it is removed.
	doors []diskDoor
}

// routes returns the local API's handler.
func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.handleStatus)
	mux.HandleFunc("GET /v1/disks", s.handleListDisks)
	mux.HandleFunc("POST /v1/disks", s.handleCreateDisk)
	mux.HandleFunc("GET /v1/disks/{name}", s.handleDiskInfo)
	mux.HandleFunc("DELETE /v1/disks/{name}", s.handleRemoveDisk)
	mux.HandleFunc("PUT /v1/disks/{name}/import", s.handleImport)
	mux.HandleFunc("POST /v1/disks/{name}/import-file", s.handleImportFile)
	mux.HandleFunc("GET /v1/disks/{ref}/export", s.handleExport)
	mux.HandleFunc("POST /v1/disks/{ref}/export-file", s.handleExportFile)
	mux.HandleFunc("POST /v1/disks/{ref}/clone", s.handleClone)
	mux.HandleFunc("POST /v1/disks/{name}/commit", s.handleCommit)
	mux.HandleFunc("GET /v1/disks/{name}/replicas", s.handleListReplicas)
	mux.HandleFunc("POST /v1/disks/{name}/replicas", s.handleCreateReplica)
	mux.HandleFunc("GET /v1/replicas", s.handleReplicaDisks)
	mux.HandleFunc("POST /v1/disks/{name}/replicas/{replica}/restore", s.handleRestore)
	mux.HandleFunc("DELETE /v1/disks/{name}/replicas/{replica}", s.handleRemoveReplica)
	mux.HandleFunc("PUT /v1/disks/{name}/acl", s.handleSetACL)
	mux.HandleFunc("PUT /v1/disks/{name}/chap", s.handleSetCHAP)
	mux.HandleFunc("GET /v1/mounts", s.handleListMounts)
	mux.HandleFunc("POST /v1/mounts", s.handleMount)
	mux.HandleFunc("DELETE /v1/mounts", s.handleUnmount)
	mux.HandleFunc("GET /v1/mounts/wait", s.handleWaitMount)
	mux.HandleFunc("GET /v1/spacesuits", s.handleListSpacesuits)
	mux.HandleFunc("POST /v1/spacesuits", s.handlePublish)
	mux.HandleFunc("DELETE /v1/spacesuits/{ref}", s.handleRemoveSpacesuit)
	mux.HandleFunc("GET /v1/transfers", s.handleListTransfers)
	mux.HandleFunc("POST /v1/transfers", s.handleStartTransfer)
	mux.HandleFunc("GET /v1/transfers/{id}", s.handleTransferInfo)
	mux.HandleFunc("POST /v1/transfers/{id}/cancel", s.handleCancelTransfer)
	mux.HandleFunc("GET /v1/replicate", s.handleListPolicies)
	mux.HandleFunc("POST /v1/replicate", s.handleReplicate)
	mux.HandleFunc("DELETE /v1/replicate/{disk}/{site}", s.handleRemovePolicy)
	mux.HandleFunc("POST /v1/disks/{name}/recover", s.handleRecover)
	mux.HandleFunc("GET /v1/id", s.handleID)
	mux.HandleFunc("POST /v1/join", s.handleJoin)
	mux.HandleFunc("GET /v1/peers", s.handlePeers)
	mux.HandleFunc("DELETE /v1/peers/{id}", s.handleForgetPeer)
	mux.HandleFunc("POST /v1/disks/{name}/move", s.handleMove)
	mux.HandleFunc("POST /v1/disks/{name}/take", s.handleTake)
	mux.HandleFunc("POST /v1/gc", s.handleGC)
	mux.HandleFunc("POST /v1/scrub", s.handleScrub)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, fmt.Errorf("no such endpoint: %s %s", r.Method, r.URL.Path), http.StatusNotFound, codeNotFound)
	})
	return mux
}

func (s *server) handleStatus(w http.ResponseWriter, r *http.Request) {
	disks, nlocal, err := listDisks(r.Context(), s.vols, s.mesh)
	if err != nil {
		s.fail(w, r, fmt.Errorf("status: %w", err))
		return
	}
	st := s.store.Stats()
	out := Status{
		ID:        s.id.ID(),
		Site:      s.cfg.Site,
		Home:      s.cfg.Home,
		Listen:    s.cfg.Listen,
		PID:       os.Getpid(),
		Started:   s.started,
		Blocks:    st.Blocks,
		Bytes:     st.Bytes,
		DiskBytes: st.DiskBytes,
		Disks:     nlocal,
		// The sum of what disk ls says, at the same instant.
		UnderReplicated: totalUnderReplicated(disks),
		Space:           spaceStatus(s.cfg),
	}
	s.nbd.fillStatus(&out)
	s.iscsi.fillStatus(&out)
	if s.mesh != nil {
		out.PeerID = s.mesh.selfStr
		hs := api.HealStatus(s.mesh.healer.Status())
		out.Heal = &hs
		for _, p := range s.mesh.peers() {
			out.Members = append(out.Members, p)
		}
	}
	out.Mounts = s.mounts.list()
	for _, d := range disks[:nlocal] {
		out.Replicas += d.ReplicaCount
	}
	s.writeJSON(w, http.StatusOK, out)
}

func (s *server) handleGC(w http.ResponseWriter, r *http.Request) {
	st, err := s.vols.GC(r.Context())
	if err != nil {
		s.fail(w, r, fmt.Errorf("gc: %w", err))
		return
	}
	s.log.Info("gc done", "roots", st.Roots, "marked", st.Marked, "swept_blocks", st.SweptBlocks, "swept_bytes", st.SweptBytes, "duration", st.Duration)
	s.writeJSON(w, http.StatusOK, st)
}

func (s *server) handleScrub(w http.ResponseWriter, r *http.Request) {
	res := ScrubResult{Corrupt: []CorruptBlock{}}
	var bad []cid.Cid
	rep, err := blockstore.Scrub(r.Context(), s.store, func(c cid.Cid, err error) {
		res.Corrupt = append(res.Corrupt, CorruptBlock{CID: c.String(), Error: err.Error()})
		bad = append(bad, c)
	})
	if err != nil {
		s.fail(w, r, fmt.Errorf("scrub: %w", err))
		return
	}
	// Blocks no member holds a good copy of may be garbage the others
	// collected already: those no live root reaches are deleted.
	var orphans []int
	for i, c := range bad {
		if s.mesh == nil {
			orphans = append(orphans, i)
			continue
		}
		if err := s.mesh.repair(r.Context(), c); err != nil {
			res.Corrupt[i].Error += "; not repaired: " + err.Error()
			if errors.Is(err, blockstore.ErrNotFound) {
				orphans = append(orphans, i)
			}
			continue
		}
		res.Corrupt[i].Repaired = true
		s.log.Warn("corrupt block replaced with a good copy from the mesh", "cid", c)
	}
	s.dropGarbage(r.Context(), &res, bad, orphans)
	res.Checked, res.Bytes = rep.Checked, rep.Bytes
	if len(res.Corrupt) > 0 {
		s.log.Warn("scrub found corrupt blocks", "corrupt", len(res.Corrupt), "checked", res.Checked)
	}
	s.writeJSON(w, http.StatusOK, res)
}

// dropGarbage deletes the corrupt blocks bad[i], i in orphans, that no
// live root reaches, and marks them Dropped in res. If the roots cannot be
// read whole, nothing is deleted and the blocks stay reported.
func (s *server) dropGarbage(ctx context.Context, res *ScrubResult, bad []cid.Cid, orphans []int) {
	if len(orphans) == 0 {
		return
	}
	cids := make([]cid.Cid, len(orphans))
	for j, i := range orphans {
		cids[j] = bad[i]
	}
	dropped, err := s.vols.DropUnreachable(ctx, cids)
	if err != nil {
		s.log.Warn("cannot tell which corrupt blocks are garbage; keeping them", "blocks", len(cids), "err", err)
		return
	}
	gone := make(map[cid.Cid]bool, len(dropped))
	for _, c := range dropped {
		gone[c] = true
	}
	for _, i := range orphans {
		if gone[bad[i]] {
			res.Corrupt[i].Dropped = true
			res.Corrupt[i].Error += "; garbage (no live root reaches it): deleted"
			s.log.Warn("corrupt garbage block deleted", "cid", bad[i])
		}
	}
}

// decode reads a bounded JSON body into v.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %v: %w", err, volume.ErrInvalid)
	}
	return nil
}

func (s *server) writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		s.log.Debug("write response", "err", err)
	}
}

// fail writes err as an error response with the status it maps to.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code := classify(err)
	s.writeError(w, r, err, status, code)
}

func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error, status int, code string) {
	lvl := slog.LevelDebug
	if status >= 500 {
		lvl = slog.LevelError
	}
	s.log.Log(r.Context(), lvl, "request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	s.writeJSON(w, status, errorBody{Error: errorMessage(err, code), Code: code})
}

// invalidf returns a request error that maps to 400.
func invalidf(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, volume.ErrInvalid)...)
}
