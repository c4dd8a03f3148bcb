package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

// Run keeps the catalog and this node's volumes in agreement until ctx
// ends: a reconcile pass after every local change, catalog change and
// membership change, and every ReconcileEvery at least; the catalog is
// saved after each pass. Attach must have been called.
func (c *Cluster) Run(ctx context.Context) {
	t := c.clock.NewTicker(c.cfg.ReconcileEvery)
	defer t.Stop()
	for {
		c.reconcile(ctx)
		if err := c.SaveCatalog(); err != nil {
			c.log.Error("save catalog", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		case <-c.wake:
		case <-c.vols.Changed():
		}
	}
}

// Reconcile runs one whole pass now: it publishes this node's disks and
// replicas, adopts the disks the catalog hands to this node, gives up the
// disks another node owns now, and starts replication of new roots.
// Request paths publish their own keys (Publish) instead.
func (c *Cluster) Reconcile(ctx context.Context) { c.reconcile(ctx) }

func (c *Cluster) reconcile(ctx context.Context) {
	c.reconcileMu.Lock()
	defer c.reconcileMu.Unlock()
	c.apply(ctx, Decide(c.view()))
}

// view is the decision's snapshot; call it under reconcileMu.
func (c *Cluster) view() View {
	v := View{Self: c.selfStr, Catalog: map[string]catalog.Entry{}, Local: Locals(c.vols.Records()), Pushes: map[string]Pushes{},
		TombSeen: map[string]time.Time{}}
	for _, e := range c.cat.Snapshot() {
		v.Catalog[e.Key] = e
	}
	now := c.clock.Now()
	c.mu.Lock()
	for key, e := range v.Catalog {
		// A tombstone whose change callback has not run yet is seen now.
		c.seeLocked(e, now)
		if e.Deleted {
			v.TombSeen[key] = c.tombSeen[key]
		}
	}
	for key := range c.tombSeen {
		if _, ok := v.Catalog[key]; !ok {
			delete(c.tombSeen, key) // dropped from the catalog
		}
	}
	for _, l := range v.Local {
		if l.Kind == KindDisk {
			v.Pushes[l.Disk] = Pushes{Pushed: c.pushed[l.Disk], Tried: c.tried[l.Disk], Pushing: c.pushing[l.Disk]}
		}
	}
	c.mu.Unlock()
	return v
}

// apply carries out a decision's actions in order; call it under
// reconcileMu, the lock the View was taken under.
func (c *Cluster) apply(ctx context.Context, actions []Action) {
	givenUp := map[string]bool{}
	for _, a := range actions {
		switch a.Op {
		case OpAdopt:
			if err := c.adopt(ctx, a.Entry); err != nil {
				c.log.Error("adopt disk", "disk", a.Key, "err", err)
			}
		case OpAddReplica:
			if err := c.addReplica(ctx, a.Entry); err != nil {
				c.log.Error("add replica", "key", a.Key, "err", err)
			} else {
				c.log.Info("added a replica another node published", "key", a.Key, "writer", a.Entry.Writer)
			}
		case OpGiveUp:
			c.giveUp(ctx, a.Local, a.Entry)
		case OpForget:
			c.forget(ctx, a.Local)
		case OpPublish:
			_, err := c.PutRecord(a.Entry)
			switch {
			case err == nil:
			case errors.Is(err, catalog.ErrFenced) && a.Local.Kind == KindDisk:
				// The version that fenced the Put came after the View:
				// give up against it, not against the pass's snapshot,
				// so the fenced replica names the epoch that won.
				e, _ := c.cat.Lookup(a.Key)
				c.giveUp(ctx, a.Local, e)
				givenUp[a.Key] = true
			default:
				c.log.Error("publish", "key", a.Key, "err", err)
			}
		case OpTombstone:
			if _, err := c.Tombstone(a.Key, a.Entry.Epoch); err != nil {
				c.log.Debug("tombstone", "key", a.Key, "err", err)
			}
		case OpReplicate:
			if !givenUp[a.Key] {
				c.replicateAsync(a.Local)
			}
		}
	}
}

// forget removes a local spacesuit version or replica the mesh removed.
func (c *Cluster) forget(ctx context.Context, l Local) {
	var err error
	if l.Kind == KindSpacesuit {
		v, _ := strconv.ParseUint(l.Name, 10, 64)
		err = c.vols.RemoveSpacesuit(ctx, l.Disk, v)
	} else {
		err = c.vols.RemoveReplica(ctx, l.Disk, l.Name)
	}
	if err != nil && !errors.Is(err, volume.ErrNotFound) {
		c.log.Error("forget removed record", "key", l.Key, "err", err)
		return
	}
	c.log.Info("removed here too: the mesh removed it", "key", l.Key)
}

// adopt makes a disk the catalog hands to this node writable here, with
// its replicas, its rules (who may open it; CHAP stays required with no
// secret here until an operator sets one), and its origin and creator. Its blocks stay where they
// are until read or healed.
func (c *Cluster) adopt(ctx context.Context, e catalog.Entry) error {
	name := strings.TrimPrefix(e.Key, catalog.DiskPrefix)
	// The disk's rules come with it, and are in place before its head
	// is: no client gets in between under no rules at all.
	spec := volume.DiskSpec{Name: name, Size: e.Size, BlockSize: e.BlockSize, Replicas: e.Replicas, Sync: e.Sync, Access: entryAccess(e),
		Origin: e.Origin, Creator: e.Creator}
	_, err := c.vols.CreateDiskAt(ctx, spec, e.Root)
	if errors.Is(err, volume.ErrExists) {
		// A head kept here (not given up yet): the owner's rules win.
		_, err = c.vols.CarryAccess(ctx, name, entryAccess(e))
	}
	if err != nil {
		return err
	}
	for _, r := range c.cat.List(catalog.ReplicaPrefix + name + "/") {
		if err := c.addReplica(ctx, r); err != nil {
			return err
		}
	}
	c.log.Info("adopted disk", "disk", name, "epoch", e.Epoch, "root", e.Root)
	return nil
}

// addReplica adds the replica the catalog record r names to the local
// volumes; one held already is kept.
func (c *Cluster) addReplica(ctx context.Context, r catalog.Entry) error {
	disk, name, _ := strings.Cut(strings.TrimPrefix(r.Key, catalog.ReplicaPrefix), "/")
	err := c.vols.AddReplica(ctx, volume.ReplicaInfo{Disk: disk, Name: name, Size: r.Size, BlockSize: r.BlockSize, Created: r.Created}, r.Root)
	if err != nil && !errors.Is(err, volume.ErrExists) {
		return err
	}
	return nil
}

// giveUp removes the local head of a disk another node owns now. Writes
// this node took that the catalog's root does not hold (made while it was
// cut off, say) are kept as a replica named fenced-e<epoch>-<node>-<time>,
// so nothing acknowledged is lost; the operator can restore or clone it.
// The commit, the replica and the removal are one volume operation: a
// write acknowledged between them would be in no root.
func (c *Cluster) giveUp(ctx context.Context, l Local, e catalog.Entry) {
	kept, err := c.vols.GiveUpDisk(ctx, l.Disk, c.fencedName(e.Epoch), e.Root)
	if err != nil && !errors.Is(err, volume.ErrNotFound) {
		c.log.Error("give up fenced disk", "disk", l.Disk, "err", err)
		return
	}
	if kept.Name != "" {
		c.log.Warn("disk is owned by another node now; its diverging writes are kept in a replica",
			"disk", l.Disk, "owner", e.Owner, "epoch", e.Epoch, "replica", kept.Name)
		c.pushFenced(l, e, kept)
	}
	c.log.Info("gave up disk", "disk", l.Disk, "owner", e.Owner, "epoch", e.Epoch)
}

// pushFenced pushes the fenced replica kept of the disk given up (l, at
// e, the catalog's record) to its placement sets in the background. Its
// new blocks, the writes the owner lacks, are on this node alone until
// then: heal copies them too, but only once its passes reach them, which
// took half a minute under torture's faults, long enough for a corrupt
// fault on this node to lose them. The blocks it shares with the root
// the new owner started from are in the mesh already.
func (c *Cluster) pushFenced(l Local, e catalog.Entry, kept volume.Kept) {
	replicas := max(l.Replicas, e.Replicas)
	go func() {
		ctx, cancel := context.WithTimeout(c.life, asyncPushTimeout)
		defer cancel()
		st, err := c.pusher.Push(ctx, e.Root, kept.Root, replicas)
		if err != nil {
			c.log.Warn("fenced replica not replicated in full yet; heal will copy the rest", "disk", l.Disk, "replica", kept.Name, "err", err)
			return
		}
		c.log.Info("fenced replica replicated", "disk", l.Disk, "replica", kept.Name, "blocks", st.Blocks, "sent", st.Sent)
	}()
}

// fencedName is the name of the replica a give-up at epoch keeps:
// fenced-e<epoch>-<node>-<time>, <node> the last characters of this
// node's ID, so that two nodes giving the same disk up at the same epoch
// in the same second keep distinct replicas (one name with two roots
// would flip between them in the catalog forever). The volumes append -2,
// -3 … when an earlier give-up here took the name.
func (c *Cluster) fencedName(epoch uint64) string {
	return fmt.Sprintf("%s%d-%s-%s", fencedPrefix, epoch, shortID(c.selfStr), c.clock.Now().UTC().Format("20060102-150405"))
}

// fencedPrefix begins every name fencedName makes, followed by the epoch.
const fencedPrefix = "fenced-e"

// isFencedName reports whether replica name is one a give-up kept
// (fencedName, with the volumes' -2, -3 … suffix or not): fenced-e, an
// epoch, a dash.
func isFencedName(name string) bool {
	rest, ok := strings.CutPrefix(name, fencedPrefix)
	if !ok {
		return false
	}
	epoch, _, ok := strings.Cut(rest, "-")
	if !ok || epoch == "" {
		return false
	}
	_, err := strconv.ParseUint(epoch, 10, 64)
	return err == nil
}

// shortID is the last 6 characters of a node ID: enough to tell a
// mesh's nodes apart in a name.
func shortID(id string) string {
	if len(id) <= 6 {
		return id
	}
	return id[len(id)-6:]
}
