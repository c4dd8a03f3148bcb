package cluster

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/heal"
	"github.com/weft-mesh/weft/mesh/catalog"
)

// asyncPushTimeout bounds one background push of a disk's new root.
const asyncPushTimeout = 10 * time.Minute

// replicateAsync pushes the head l's new root to its placement sets in the
// background (async mode; sync disks do it in their flushes too). One push
// per disk at a time; a root pushed, or tried and left to heal, is not
// pushed again.
func (c *Cluster) replicateAsync(l Local) {
	c.mu.Lock()
	if c.pushing[l.Disk] || c.pushed[l.Disk] == l.Root || c.tried[l.Disk] == l.Root {
		c.mu.Unlock()
		return
	}
	c.pushing[l.Disk] = true
	prev := c.pushed[l.Disk]
	c.mu.Unlock()
	go func() {
		pctx, cancel := context.WithTimeout(c.life, asyncPushTimeout)
		defer cancel()
		st, err := c.pusher.Push(pctx, prev, l.Root, l.Replicas)
		c.mu.Lock()
		c.pushing[l.Disk] = false
		switch {
		case err == nil:
			c.pushedLocked(l.Disk, l.Root)
		case c.life.Err() == nil:
			// Left to heal: what a failed push missed (a member that died,
			// one unreachable) the placement sets' heal passes copy.
			// Pushing the whole root again on the next reconcile copied
			// the blocks a second time, beside those passes.
			c.tried[l.Disk] = l.Root
		}
		c.mu.Unlock()
		if err != nil {
			lvl := slog.LevelWarn
			if errors.Is(err, heal.ErrTooFewNodes) {
				lvl = slog.LevelDebug // status shows it
			}
			c.log.Log(pctx, lvl, "replication behind; heal will retry", "disk", l.Disk, "err", err)
			return
		}
		c.log.Debug("replicated", "disk", l.Disk, "root", l.Root, "blocks", st.Blocks, "sent", st.Sent, "bytes", st.Bytes)
		// The push's acknowledgements already counted its copies in the
		// redundancy account: no heal pass is needed to recount them.
		c.Poke() // the root may have moved on meanwhile
	}()
}

// pushedLocked records root as the last root of disk its placement sets
// confirmed: the next reconcile publishes it as the disk's held root
// (catalog.Entry.Held). Call it with c.mu held.
func (c *Cluster) pushedLocked(disk string, root cid.Cid) { c.pushed[disk] = root }

// forgetPushesLocked forgets the pushes of e's disk when e says this node
// no longer owns it (removed, handed over, taken): the last root it pushed
// is no base for a later push by this node, which may make the disk anew
// or get it back at another root, and no held root of that disk. Call it
// with c.mu held.
func (c *Cluster) forgetPushesLocked(e catalog.Entry) {
	disk, isDisk := strings.CutPrefix(e.Key, catalog.DiskPrefix)
	if isDisk && (e.Deleted || e.Owner != c.selfStr) {
		delete(c.pushed, disk)
		delete(c.tried, disk)
	}
}

// Pushed is the last root of disk its placement sets confirmed (undefined
// if none): the base a push of a newer root sends the new blocks of.
func (c *Cluster) Pushed(disk string) cid.Cid {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pushed[disk]
}
