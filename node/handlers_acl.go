package node

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

// setAccess is the one shape of the handlers that change who may open a
// disk: decode Req, check this node owns the disk, apply (which ends the
// sessions the new rules refuse, see endRefused), announce the disk's
// record (its rules travel with it), log what was set (never a secret)
// and answer the disk's info.
func setAccess[Req any](s *server, w http.ResponseWriter, r *http.Request, what string,
	apply func(ctx context.Context, disk string, req Req) (volume.DiskInfo, error),
	logged func(volume.DiskInfo) []slog.Attr) {
	name := r.PathValue("name")
	var req Req
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.mustOwn(name); err != nil {
		s.fail(w, r, err)
		return
	}
	info, err := apply(r.Context(), name, req)
	if err != nil {
		s.fail(w, r, fmt.Errorf("disk %s: set %s: %w", name, what, err))
		return
	}
	// The rules travel with the disk in its catalog record: a take right
	// after this answer starts from them.
	s.announce(r.Context(), catalog.DiskKey(name))
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "disk "+what+" set", append([]slog.Attr{slog.String("disk", name)}, logged(info)...)...)
	s.writeJSON(w, http.StatusOK, apiDiskInfo(info))
}

// handleSetACL replaces a disk's list of allowed client networks, its
// list of allowed iSCSI initiators, or both together.
func (s *server) handleSetACL(w http.ResponseWriter, r *http.Request) {
	setAccess(s, w, r, "acl",
		func(ctx context.Context, disk string, req api.ACLRequest) (volume.DiskInfo, error) {
			return s.vols.SetACL(ctx, disk, volume.ACL{Allow: req.Allow, Initiators: req.Initiators})
		},
		func(info volume.DiskInfo) []slog.Attr {
			return []slog.Attr{slog.Any("allow", info.Allow), slog.Any("initiators", info.Initiators)}
		})
}

// handleSetCHAP sets or clears a disk's iSCSI CHAP secrets. The secrets
// are never logged.
func (s *server) handleSetCHAP(w http.ResponseWriter, r *http.Request) {
	setAccess(s, w, r, "iscsi chap",
		func(ctx context.Context, disk string, req api.CHAPRequest) (volume.DiskInfo, error) {
			var c *volume.CHAP
			if req.User != "" || req.Secret != "" || req.TargetUser != "" || req.TargetSecret != "" {
				c = &volume.CHAP{User: req.User, Secret: req.Secret, TargetUser: req.TargetUser, TargetSecret: req.TargetSecret}
			}
			return s.vols.SetCHAP(ctx, disk, c)
		},
		func(info volume.DiskInfo) []slog.Attr {
			return []slog.Attr{slog.String("user", info.CHAPUser), slog.String("target_user", info.CHAPTargetUser)}
		})
}
