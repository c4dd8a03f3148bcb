package node

import (
	"context"
	"errors"
	"fmt"
	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/cluster"
	"github.com/weft-mesh/weft/internal/errkind"
	"net/http"
	"strings"
	"time"

	"github.com/weft-mesh/weft/mesh"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/volume"
)

// ErrNoMesh is returned by mesh commands on a node without listen
// addresses.
var ErrNoMesh = errors.New("this node runs alone (no --listen addresses): it has no mesh")

// IDInfo is api.IDInfo.
type IDInfo = api.IDInfo

// JoinRequest is api.JoinRequest.
type JoinRequest = api.JoinRequest

// JoinResult is api.JoinResult.
type JoinResult = api.JoinResult

// Peer is api.Peer.
type Peer = api.Peer

// MoveRequest is api.MoveRequest.
type MoveRequest = api.MoveRequest

// TakeRequest is api.TakeRequest.
type TakeRequest = api.TakeRequest

func (s *server) meshOr(w http.ResponseWriter, r *http.Request) bool {
	if s.mesh == nil {
		s.fail(w, r, errkind.Errorf(volume.ErrInvalid, "%w", ErrNoMesh))
		return false
	}
	return true
}

func (s *server) handleID(w http.ResponseWriter, r *http.Request) {
	if !s.meshOr(w, r) {
		return
	}
	s.writeJSON(w, http.StatusOK, IDInfo{PeerID: s.mesh.selfStr, Addrs: s.mesh.addrs()})
}

func (s *server) handleJoin(w http.ResponseWriter, r *http.Request) {
	if !s.meshOr(w, r) {
		return
	}
	var req JoinRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if len(req.Addrs) == 0 {
		s.fail(w, r, invalidf("join: no addresses"))
		return
	}
	for _, a := range req.Addrs {
		if err := mesh.ValidateMemberAddr(a); err != nil {
			s.fail(w, r, invalidf("join: %q is not a member's address (MULTIADDR/p2p/PEER-ID)", a))
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	n, err := s.mesh.net.Join(ctx, req.Addrs)
	if err != nil {
		s.fail(w, r, fmt.Errorf("join: %w", err))
		return
	}
	s.log.Info("joined mesh", "addrs", req.Addrs, "answered", n)
	s.writeJSON(w, http.StatusOK, JoinResult{Joined: n, Members: len(s.mesh.net.Members())})
}

func (s *server) handlePeers(w http.ResponseWriter, r *http.Request) {
	if !s.meshOr(w, r) {
		return
	}
	s.writeJSON(w, http.StatusOK, s.mesh.peers())
}

// handleForgetPeer drops a dead or departed member from this node's view
// of the mesh; a live one is refused, as memberlist would list it again.
func (s *server) handleForgetPeer(w http.ResponseWriter, r *http.Request) {
	if !s.meshOr(w, r) {
		return
	}
	id, err := meshnet.ParsePeerID(r.PathValue("id"))
	if err != nil {
		s.fail(w, r, invalidf("peers rm: %q is not a peer ID: %v", r.PathValue("id"), err))
		return
	}
	switch err := s.mesh.forgetMember(id); {
	case errors.Is(err, mesh.ErrMemberAlive):
		s.fail(w, r, fmt.Errorf("peers rm: %s is alive: stop it first (a stopped node leaves by itself): %w", id, volume.ErrInvalid))
		return
	case errors.Is(err, mesh.ErrUnknownMember):
		s.fail(w, r, fmt.Errorf("peers rm: %s is not a member: %w", id, volume.ErrNotFound))
		return
	case err != nil:
		s.fail(w, r, fmt.Errorf("peers rm: %w", err))
		return
	}
	s.log.Info("member removed by the operator", "peer", id)
	w.WriteHeader(http.StatusNoContent)
}

func (n *meshNode) peers() []Peer {
	out := []Peer{}
	for _, m := range n.net.Members() {
		p := Peer{PeerID: m.ID.String(), Site: m.Site, State: string(m.State), Addrs: []string{}, Used: m.Used, Free: m.Free, Self: m.Self}
		p.Addrs = append(p.Addrs, m.Addrs...)
		out = append(out, p)
	}
	return out
}

// handleMove hands a disk this node owns to another member: the head is
// committed and replicated, then the catalog names the new owner with a
// higher epoch; the new owner adopts it and this node gives it up.
func (s *server) handleMove(w http.ResponseWriter, r *http.Request) {
	if !s.meshOr(w, r) {
		return
	}
	name := r.PathValue("name")
	var req MoveRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	to, err := meshnet.ParsePeerID(req.To)
	if err != nil {
		s.fail(w, r, invalidf("move: %q is not a peer ID", req.To))
		return
	}
	e, info, err := s.mesh.cl.Move(r.Context(), name, to)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, s.mesh.diskInfo(r.Context(), e, info))
}

// handleTake makes this node the owner of a disk whose owner is dead (or,
// with force, alive but unreachable), with a higher epoch that fences it.
func (s *server) handleTake(w http.ResponseWriter, r *http.Request) {
	if !s.meshOr(w, r) {
		return
	}
	name := r.PathValue("name")
	var req TakeRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	e, err := s.mesh.cl.Take(r.Context(), name, req.Force)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	info, err := s.vols.DiskInfo(r.Context(), name)
	if err != nil {
		// The take happened: answering an error would have the operator
		// retry a take that is done. The catalog's record says the rest.
		s.log.Warn("disk taken; its info is the catalog's", "disk", name, "err", err)
		info = cluster.CatalogDiskInfo(e)
	}
	s.writeJSON(w, http.StatusOK, s.mesh.diskInfo(r.Context(), e, info))
}

// diskInfo completes a disk's info with what the mesh knows: owner,
// epoch and the under-replicated count of its root.
func (n *meshNode) diskInfo(ctx context.Context, e catalog.Entry, info volume.DiskInfo) api.DiskInfo {
	d := apiDiskInfo(info)
	d.Owner, d.Epoch = e.Owner, e.Epoch
	if e.Held.Defined() {
		d.HeldRoot = e.Held.String()
	}
	d.UnderReplicated = n.underReplicated(ctx, info)
	return d
}

// localDiskInfo completes the info of a disk held here with what the mesh
// knows; one not published yet has no owner, and nobody confirmed a copy.
func (n *meshNode) localDiskInfo(ctx context.Context, local volume.DiskInfo) api.DiskInfo {
	if e, ok := n.cat.Get(catalog.DiskKey(local.Name)); ok {
		return n.diskInfo(ctx, e, local)
	}
	info := apiDiskInfo(local)
	info.UnderReplicated = n.underReplicated(ctx, local)
	return info
}

// remoteDisks describes the disks of the catalog this node does not hold.
func (n *meshNode) remoteDisks(ctx context.Context, local map[string]bool) []api.DiskInfo {
	var out []api.DiskInfo
	for _, e := range n.cl.List(catalog.DiskPrefix) {
		if !local[strings.TrimPrefix(e.Key, catalog.DiskPrefix)] {
			out = append(out, n.remoteDisk(ctx, e))
		}
	}
	return out
}

// remoteDisk describes a disk this node does not hold from its catalog
// record e and the blocks held here (cluster.RemoteDisk).
func (n *meshNode) remoteDisk(ctx context.Context, e catalog.Entry) api.DiskInfo {
	return n.diskInfo(ctx, e, n.cl.RemoteDisk(ctx, e))
}

// openView opens a local disk, replica or spacesuit version, or else one
// the mesh's catalog names (cluster.Open): the one way the HTTP, NBD and
// FUSE doors open a ref. mn is nil on a node without a mesh.
func openView(ctx context.Context, vols *volume.Manager, mn *meshNode, ref volume.Ref) (*volume.View, error) {
	if mn == nil {
		return vols.OpenView(ctx, ref)
	}
	return mn.cl.Open(ctx, ref)
}
