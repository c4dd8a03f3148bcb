package node

import (
	"context"

	"github.com/weft-mesh/weft/api"
)

// ErrNotOwner is matched (errors.Is) by the error of a command that would
// write a disk, or its replicas, on a node that does not own it; the
// daemon answers cluster.ErrNotOwner (CheckOwner's refusal) with its code.
var ErrNotOwner = api.ErrNotOwner

// mustOwn is the cluster's owner check for a node with or without a mesh:
// the one check every command writing a disk head or its replicas makes
// before it writes.
func (s *server) mustOwn(disk string) error {
	if s.mesh == nil {
		return nil
	}
	return s.mesh.cl.CheckOwner(disk)
}

// announce publishes the records of keys and waits, bounded, for every
// live member to merge them (cluster.Announce), for a node with or without
// a mesh.
func (s *server) announce(ctx context.Context, keys ...string) {
	if s.mesh != nil {
		s.mesh.cl.Announce(ctx, keys...)
	}
}
