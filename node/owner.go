package node

import (
	"context"
	"fmt"
	"github.com/weft-mesh/weft/api"
	"slices"
	"strings"
	"time"

	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

// ErrNotOwner is matched (errors.Is) by the error of a command that would
// write a disk, or its replicas, on a node that does not own it. Nothing
// was written: the owner is the one place a disk's head changes, and
// writes taken anywhere else would only be fenced into a replica.
var ErrNotOwner = api.ErrNotOwner

// notOwnerError names the owner and how to reach it.
type notOwnerError struct {
	disk, owner, self string
	alive             bool
}

func (e *notOwnerError) Error() string {
	if !e.alive {
		return fmt.Sprintf("disk %q: owned by %s, which is not alive; take it here first with `weft disk take %s`", e.disk, e.owner, e.disk)
	}
	return fmt.Sprintf("disk %q: owned by %s; run it there, or move it here first with `weft disk move %s --to %s` on %s",
		e.disk, e.owner, e.disk, e.self, e.owner)
}

func (e *notOwnerError) Is(target error) bool { return target == ErrNotOwner }

// checkOwner returns nil when this node may write disk: it owns it, or the
// catalog does not name it (a new disk). Otherwise it returns an error
// matching ErrNotOwner that names the owner. It is the one check every
// command writing a disk head or its replicas makes before it writes.
func (n *meshNode) checkOwner(disk string) error {
	e, ok := n.cat.Get(catalog.DiskKey(disk))
	if !ok || e.Owner == n.selfStr {
		return nil
	}
	return &notOwnerError{disk: disk, owner: e.Owner, self: n.selfStr, alive: n.alive(e.Owner)}
}

// mustOwn is checkOwner for a node with or without a mesh.
func (s *server) mustOwn(disk string) error {
	if s.mesh == nil {
		return nil
	}
	return s.mesh.checkOwner(disk)
}

// announceTimeout bounds how long a command waits for the other members to
// confirm its catalog records. Past it the command still succeeds: the
// change is made and gossip brings it to the members that did not answer.
const announceTimeout = 5 * time.Second

// announce returns once the catalog records of keys (tombstones included)
// are in this node's catalog and every other live member has merged them,
// or after announceTimeout, logging which members did not confirm. A
// command that creates, changes or removes a record calls it before it
// answers, so that a command run right after on another node sees the
// change (read-your-writes across the mesh).
func (n *meshNode) announce(ctx context.Context, keys ...string) {
	n.reconcile(ctx) // turns the local change into its catalog record
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	var es []catalog.Entry
	for _, e := range n.cat.Snapshot() {
		if want[e.Key] {
			es = append(es, e)
		}
	}
	if len(es) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, announceTimeout)
	defer cancel()
	acks, err := n.pushEntries(ctx, es)
	if err != nil {
		n.log.Warn("catalog change not confirmed by every member; gossip brings it to them later",
			"keys", keys, "confirmed", acks, "err", err)
	}
}

// announce is meshNode.announce for a node with or without a mesh.
func (s *server) announce(ctx context.Context, keys ...string) {
	if s.mesh != nil {
		s.mesh.announce(ctx, keys...)
	}
}

// missing explains why this node has no record of ref, local or in the
// catalog: removed (and by whom and when), or never known to the mesh. The
// error wraps volume.ErrNotFound.
func (n *meshNode) missing(ref volume.Ref) error {
	kind, keys := "disk", []string{catalog.DiskKey(ref.Disk)}
	if ref.Replica != "" {
		kind, keys = "replica", []string{catalog.ReplicaKey(ref.Disk, ref.Replica)}
		if name, v, err := volume.ParseSpacesuitRef(ref.String()); err == nil {
			kind, keys = "replica or spacesuit version", append(keys, catalog.SpacesuitKey(name, v))
		}
	}
	for _, e := range n.cat.Snapshot() {
		if slices.Contains(keys, e.Key) && e.Deleted {
			kind, _, _ = strings.Cut(e.Key, "/")
			return fmt.Errorf("%s %q was removed from the mesh by %s at %s: %w",
				kind, ref.String(), e.Writer, e.Modified.UTC().Format(time.RFC3339), volume.ErrNotFound)
		}
	}
	return kindf(volume.ErrNotFound, "%s %q: not on this node nor in the mesh catalog", kind, ref.String())
}

// unavailable explains a failed read of ref from the catalog when the node
// that owns it is not alive: the blocks of its last committed root may be
// on that node only.
func (n *meshNode) unavailable(ref volume.Ref, err error) error {
	e, ok := n.cat.Get(catalog.DiskKey(ref.Disk))
	if !ok || e.Owner == n.selfStr || n.alive(e.Owner) {
		return err
	}
	return fmt.Errorf("disk %q is owned by %s, which is not alive; its last committed root is %s: %w",
		ref.Disk, e.Owner, rootText(e.Root), err)
}

// catalogReplicas lists the replicas of disk the catalog names, with the
// local details (used bytes) of those this node holds. It answers replica
// ls on a node that does not own the disk.
func (n *meshNode) catalogReplicas(ctx context.Context, disk string, local []volume.ReplicaInfo) ([]volume.ReplicaInfo, error) {
	_, known := n.cat.Get(catalog.DiskKey(disk))
	es := n.cat.List(catalog.ReplicaPrefix + disk + "/")
	if !known && len(es) == 0 && len(local) == 0 {
		return nil, n.missing(volume.Ref{Disk: disk})
	}
	byName := map[string]volume.ReplicaInfo{}
	for _, r := range local {
		byName[r.Name] = r
	}
	out := make([]volume.ReplicaInfo, 0, len(es))
	for _, e := range es {
		name := strings.TrimPrefix(e.Key, catalog.ReplicaPrefix+disk+"/")
		if r, ok := byName[name]; ok {
			out = append(out, r)
			delete(byName, name)
			continue
		}
		used, err := n.vols.RootBytes(ctx, e.Root, e.BlockSize)
		if err != nil {
			n.log.Debug("size of a remote replica", "disk", disk, "replica", name, "err", err)
		}
		out = append(out, volume.ReplicaInfo{Disk: disk, Name: name, Root: rootText(e.Root), Size: e.Size,
			BlockSize: e.BlockSize, UsedBytes: used, Created: e.Created})
	}
	for _, r := range byName { // held here, not (yet) in the catalog
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b volume.ReplicaInfo) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}
