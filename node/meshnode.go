package node

import (
	"context"
	"fmt"

	"github.com/ipfs/go-cid"
	"golang.org/x/sys/unix"
)

// repair replaces a corrupt local block with a verified copy from the
// mesh, and leaves the bad copy in place (still reported) when no member
// has a good one or the store has no room for it.
func (n *meshNode) repair(ctx context.Context, c cid.Cid) error {
	return n.fetch.Repair(ctx, c)
}

// freeBytes returns the free space of the file system holding path.
func freeBytes(path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
