package node

import (
	"context"
	"fmt"
	"github.com/weft-mesh/weft/api"

	"github.com/weft-mesh/weft/volume"
)

// listDisks is what `disk ls` shows: the local disks and, on a mesh, the
// disks of the catalog other nodes own, each with its owner and its count
// of under-replicated blocks. The first nlocal are the local disks.
func listDisks(ctx context.Context, vols *volume.Manager, mn *meshNode) (disks []api.DiskInfo, nlocal int, err error) {
	held, err := vols.ListDisks(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("list disks: %w", err)
	}
	disks = make([]api.DiskInfo, len(held))
	nlocal = len(held)
	local := map[string]bool{}
	for i, d := range held {
		if mn == nil {
			disks[i] = apiDiskInfo(d)
			continue
		}
		local[d.Name] = true
		disks[i] = mn.localDiskInfo(ctx, d)
	}
	if mn == nil {
		return disks, nlocal, nil
	}
	return append(disks, mn.remoteDisks(ctx, local)...), nlocal, nil
}

// totalUnderReplicated is the under-replicated figure of `status` and of
// the metrics: the sum of the figures of disks, so that it agrees
// with `disk ls` at the same instant. A block two disks share (a clone
// and its source) counts once for each.
func totalUnderReplicated(disks []api.DiskInfo) int64 {
	var n int64
	for _, d := range disks {
		n += d.UnderReplicated
	}
	return n
}

// underReplicated counts the blocks of the disk's root that fewer than
// its R live members confirmed holding, from the node's one redundancy
// account (heal.Redundancy). A root whose map cannot be read here counts
// every data block known, and at least one: its copies cannot be checked,
// so it is never reported replicated.
func (n *meshNode) underReplicated(ctx context.Context, info volume.DiskInfo) int64 {
	if !info.Root.Defined() {
		return 0
	}
	under, err := n.redundancy.Under(ctx, info.Root, info.Replicas)
	if err == nil {
		return under
	}
	n.log.Debug("redundancy of a disk not checked", "disk", info.Name, "root", info.Root, "err", err)
	if info.BlockSize <= 0 {
		return 1
	}
	return max(info.UsedBytes/info.BlockSize, 1)
}
