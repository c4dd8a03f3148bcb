package node

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ipfs/go-cid"
)

// repair replaces a corrupt local block with a verified copy from the
// mesh, and leaves the bad copy in place (still reported) when no member
// has a good one or the store has no room for it.
func (n *meshNode) repair(ctx context.Context, c cid.Cid) error {
	return n.fetch.Repair(ctx, c)
}

// freeBytes returns the space available to us on the file system holding
// path, counted as the block store counts it (vfs GetDiskUsage: fragment
// size, not the preferred I/O size, times the available blocks).
func freeBytes(path string) (int64, error) {
	du, err := vfs.Default.GetDiskUsage(path)
	if err != nil {
		return 0, fmt.Errorf("disk usage of %s: %w", path, err)
	}
	return int64(du.AvailBytes), nil
}
