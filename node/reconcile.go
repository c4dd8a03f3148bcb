package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"golang.org/x/sys/unix"

	"github.com/weft-mesh/weft/heal"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

// reconcileEvery bounds how stale the catalog's view of this node's disks
// can get when no change wakes the loop.
const reconcileEvery = 5 * time.Second

// reconcileLoop keeps the catalog and this node's volumes in agreement:
// it runs after every local change, catalog change and membership change.
func (n *meshNode) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(reconcileEvery)
	defer t.Stop()
	for {
		n.reconcile(ctx)
		if err := n.saveCatalog(); err != nil {
			n.log.Error("save catalog", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.wake:
		case <-n.vols.Changed():
		}
	}
}

// reconcile publishes this node's disks and replicas, adopts the disks
// the catalog hands to this node, gives up the disks another node now
// owns, and starts replication of new roots.
func (n *meshNode) reconcile(ctx context.Context) {
	// One at a time: the loop, sync flushes, publishes and replication
	// cycles all call it, and two runs must not adopt or give up a disk
	// at once.
	n.reconcileMu.Lock()
	defer n.reconcileMu.Unlock()
	all := map[string]catalog.Entry{} // tombstones included
	for _, e := range n.cat.Snapshot() {
		all[e.Key] = e
	}
	local := map[string]volume.Record{}
	for _, r := range n.vols.Records() {
		key := catalog.DiskKey(r.Disk)
		switch {
		case r.Spacesuit:
			key = catalog.SpacesuitKey(r.Disk, spacesuitVersion(r))
		case r.Replica != "":
			key = catalog.ReplicaKey(r.Disk, r.Replica)
		}
		local[key] = r
	}
	// Disks handed to this node by their previous owner.
	for key, e := range all {
		if !strings.HasPrefix(key, catalog.DiskPrefix) || e.Deleted || e.Owner != n.selfStr || e.Writer == n.selfStr {
			continue
		}
		if _, ok := local[key]; !ok {
			if err := n.adopt(ctx, e); err != nil {
				n.log.Error("adopt disk", "disk", e.Key, "err", err)
			}
		}
	}
	for key, r := range local {
		e, known := all[key]
		if (r.Spacesuit || r.Replica != "") && known && e.Deleted && e.Writer != n.selfStr {
			// Removed from the mesh by another node (spacesuit rm, replica
			// rm, a replication policy's pruning): forget it here too, or
			// this node would publish it again.
			n.forget(ctx, r, key)
			continue
		}
		if r.Replica == "" && known && !e.Deleted && e.Owner != n.selfStr {
			n.giveUp(ctx, r, e)
			continue
		}
		if r.Replica != "" && known && !e.Deleted && e.Root == r.Root {
			// A replica is a name for a root, and several nodes may hold
			// it (its owner, the sites it was pushed to): the record its
			// creator published stands, so that the creator's removal is
			// the one that counts, instead of each holder writing it
			// again over small differences in its metadata.
			continue
		}
		want := catalog.Entry{
			Key: key, Root: r.Root, Owner: n.selfStr, Size: r.Size, BlockSize: r.BlockSize,
			Replicas: r.Replicas, Sync: r.Sync, Created: r.Created, Epoch: 1,
		}
		if known {
			want.Epoch = max(e.Epoch, 1)
			if !e.Deleted && r.Replica != "" {
				want.Owner = e.Owner
			}
			if !e.Deleted && e.Root == r.Root && e.Size == r.Size && e.Replicas == r.Replicas && e.Sync == r.Sync && e.Owner == want.Owner {
				continue
			}
		}
		if !r.Root.Defined() && r.Replica != "" {
			continue // a replica of an empty disk: nothing to name
		}
		if _, err := n.publish(want); err != nil {
			if errors.Is(err, catalog.ErrFenced) && r.Replica == "" {
				n.giveUp(ctx, r, all[key])
				continue
			}
			n.log.Error("publish", "key", key, "err", err)
		}
	}
	// What this node published and no longer holds was removed here.
	for key, e := range all {
		if e.Deleted || e.Writer != n.selfStr || !volumeKey(key) {
			continue
		}
		if _, ok := local[key]; ok {
			continue
		}
		if strings.HasPrefix(key, catalog.DiskPrefix) && e.Owner != n.selfStr {
			continue // handed over: the new owner publishes it now
		}
		if d, err := n.cat.Delete(key, e.Epoch); err == nil {
			n.broadcast(d)
		}
	}
	// Replicate new roots of the disks this node owns.
	for _, r := range local {
		if r.Replica == "" && r.Root.Defined() {
			n.replicateAsync(ctx, r)
		}
	}
}

// forget removes a local spacesuit version or replica the mesh removed.
func (n *meshNode) forget(ctx context.Context, r volume.Record, key string) {
	var err error
	if r.Spacesuit {
		err = n.vols.RemoveSpacesuit(ctx, r.Disk, spacesuitVersion(r))
	} else {
		err = n.vols.RemoveReplica(ctx, r.Disk, r.Replica)
	}
	if err != nil && !errors.Is(err, volume.ErrNotFound) {
		n.log.Error("forget removed record", "key", key, "err", err)
		return
	}
	n.log.Info("removed here too: the mesh removed it", "key", key)
}

// adopt makes a disk the catalog hands to this node writable here, with
// its replicas. Its blocks stay where they are until read or healed.
func (n *meshNode) adopt(ctx context.Context, e catalog.Entry) error {
	name := strings.TrimPrefix(e.Key, catalog.DiskPrefix)
	spec := volume.DiskSpec{Name: name, Size: e.Size, BlockSize: e.BlockSize, Replicas: e.Replicas, Sync: e.Sync}
	if _, err := n.vols.CreateDiskAt(ctx, spec, e.Root); err != nil && !errors.Is(err, volume.ErrExists) {
		return err
	}
	for _, r := range n.cat.List(catalog.ReplicaPrefix + name + "/") {
		rep := strings.TrimPrefix(r.Key, catalog.ReplicaPrefix+name+"/")
		err := n.vols.AddReplica(ctx, volume.ReplicaInfo{Disk: name, Name: rep, Size: r.Size, BlockSize: r.BlockSize, Created: r.Created}, r.Root)
		if err != nil && !errors.Is(err, volume.ErrExists) {
			return err
		}
	}
	n.log.Info("adopted disk", "disk", name, "epoch", e.Epoch, "root", e.Root)
	return nil
}

// giveUp removes the local head of a disk another node owns now. Writes
// this node took that the catalog's root does not hold (made while it was
// cut off, say) are kept as a replica named fenced-e<epoch>-<time>, so
// nothing acknowledged is lost; the operator can restore or clone it.
func (n *meshNode) giveUp(ctx context.Context, r volume.Record, e catalog.Entry) {
	info, err := n.vols.Commit(ctx, r.Disk)
	if err != nil {
		n.log.Error("commit fenced disk", "disk", r.Disk, "err", err)
		return
	}
	if info.Root != rootText(e.Root) && info.Root != "" {
		name := fmt.Sprintf("fenced-e%d-%s", e.Epoch, time.Now().UTC().Format("20060102-150405"))
		if _, err := n.vols.CreateReplica(ctx, r.Disk, name); err != nil {
			n.log.Error("keep fenced writes", "disk", r.Disk, "err", err)
			return
		}
		n.log.Warn("disk is owned by another node now; its diverging writes are kept in a replica",
			"disk", r.Disk, "owner", e.Owner, "epoch", e.Epoch, "replica", name)
	}
	if err := n.vols.RemoveDisk(ctx, r.Disk); err != nil && !errors.Is(err, volume.ErrNotFound) {
		n.log.Error("remove fenced disk", "disk", r.Disk, "err", err)
		return
	}
	n.log.Info("gave up disk", "disk", r.Disk, "owner", e.Owner, "epoch", e.Epoch)
}

// replicateAsync pushes a disk's new root to its placement sets in the
// background (async mode; sync disks do it in their flushes too).
func (n *meshNode) replicateAsync(ctx context.Context, r volume.Record) {
	n.mu.Lock()
	if n.pushing[r.Disk] || n.pushed[r.Disk] == r.Root || n.tried[r.Disk] == r.Root {
		n.mu.Unlock()
		return
	}
	n.pushing[r.Disk] = true
	prev := n.pushed[r.Disk]
	n.mu.Unlock()
	go func() {
		pctx, cancel := context.WithTimeout(n.life, 10*time.Minute)
		defer cancel()
		st, err := n.pusher.Push(pctx, prev, r.Root, r.Replicas)
		n.mu.Lock()
		n.pushing[r.Disk] = false
		switch {
		case err == nil:
			n.pushed[r.Disk] = r.Root
		case n.life.Err() == nil:
			// Left to heal: what a failed push missed (a member that died,
			// one unreachable) the placement sets' heal passes copy.
			// Pushing the whole root again on the next reconcile copied
			// the blocks a second time, beside those passes.
			n.tried[r.Disk] = r.Root
		}
		n.mu.Unlock()
		if err != nil {
			lvl := slog.LevelWarn
			if errors.Is(err, heal.ErrTooFewNodes) {
				lvl = slog.LevelDebug // status shows it
			}
			n.log.Log(pctx, lvl, "replication behind; heal will retry", "disk", r.Disk, "err", err)
			return
		}
		n.log.Debug("replicated", "disk", r.Disk, "root", r.Root, "blocks", st.Blocks, "sent", st.Sent, "bytes", st.Bytes)
		// The push's acknowledgements already counted its copies in
		// n.redundancy: no heal pass is needed to recount them.
		n.poke() // the root may have moved on meanwhile
	}()
}

func rootText(c cid.Cid) string {
	if !c.Defined() {
		return ""
	}
	return c.String()
}

// freeBytes returns the free space of the file system holding path.
func freeBytes(path string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// volumeKey reports whether key names something the volumes hold (a disk,
// a replica or a spacesuit version), as opposed to a policy.
func volumeKey(key string) bool {
	return strings.HasPrefix(key, catalog.DiskPrefix) || strings.HasPrefix(key, catalog.ReplicaPrefix) ||
		strings.HasPrefix(key, catalog.SpacesuitPrefix)
}
