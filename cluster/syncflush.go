package cluster

import (
	"context"
	"fmt"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/heal"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

// SyncFlush is the volumes' SyncFlush (volume.Config.SyncFlush): it returns
// once root's blocks are on the disk's placement sets and at least R-1
// other members merged the catalog record naming root, so that a takeover
// after this node's death starts from it. It publishes the disk's own
// record only: the flush path never runs a whole reconcile pass.
func (c *Cluster) SyncFlush(ctx context.Context, disk string, root cid.Cid) error {
	key := catalog.DiskKey(disk)
	if e, ok := c.cat.Get(key); ok && e.Owner != c.selfStr {
		return fmt.Errorf("disk %q is owned by %s now: %w", disk, e.Owner, catalog.ErrFenced)
	}
	r := volume.DefaultReplicas
	for _, rec := range c.vols.Records() {
		if rec.Disk == disk && rec.Replica == "" && !rec.Spacesuit {
			r = rec.Replicas
		}
	}
	c.mu.Lock()
	prev := c.pushed[disk]
	c.mu.Unlock()
	if _, err := c.pusher.Push(ctx, prev, root, r); err != nil {
		return err
	}
	c.mu.Lock()
	c.pushedLocked(disk, root)
	c.mu.Unlock()
	if err := c.Publish(ctx, key); err != nil {
		return err
	}
	e, ok := c.cat.Get(key)
	if !ok || e.Root != root {
		return fmt.Errorf("disk %q: root %s not in the catalog after the flush", disk, root)
	}
	acks, err := c.pushEntries(ctx, []catalog.Entry{e})
	if acks < r-1 {
		if err == nil {
			// No push failed: there were too few members to push to.
			err = fmt.Errorf("%d other live members, %d needed: %w", len(c.Live())-1, r-1, heal.ErrTooFewNodes)
		}
		return fmt.Errorf("disk %q: %d of %d other nodes confirmed the new root: %w", disk, acks, r-1, err)
	}
	return nil
}
