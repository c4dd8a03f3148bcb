package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/volume"
)

// provideTimeout bounds one DHT provider announcement of a root.
const provideTimeout = 30 * time.Second

// PutRecord writes e to the catalog and gossips it.
func (c *Cluster) PutRecord(e catalog.Entry) (catalog.Entry, error) {
	e, err := c.cat.Put(e)
	if err != nil {
		return e, err
	}
	c.broadcast(e)
	if p, ok := c.net.(meshnet.Provider); ok && e.Root.Defined() {
		// A provider record per root, never per block: peers outside
		// the catalog's reach (other clusters' DHT walks) find the
		// holder of a disk or spacesuit by its root.
		go func(root cid.Cid) {
			ctx, cancel := context.WithTimeout(c.life, provideTimeout)
			defer cancel()
			if err := p.Provide(ctx, root); err != nil {
				c.log.Debug("provide root", "root", root, "err", err)
			}
		}(e.Root)
	}
	return e, nil
}

// Tombstone removes key (at epoch) from the catalog and gossips the
// tombstone.
func (c *Cluster) Tombstone(key string, epoch uint64) (catalog.Entry, error) {
	d, err := c.cat.Delete(key, epoch)
	if err != nil {
		return d, err
	}
	c.broadcast(d)
	return d, nil
}

// Merge merges entries learned out of band (a transfer's sender names the
// records it sent) and gossips nothing: their writers did.
func (c *Cluster) Merge(es []catalog.Entry) { c.cat.Merge(es) }

func (c *Cluster) broadcast(e catalog.Entry) {
	b, err := catalog.Encode([]catalog.Entry{e})
	if err != nil {
		c.log.Error("encode catalog entry", "key", e.Key, "err", err)
		return
	}
	c.net.Broadcast(b)
}

// Publish turns the local records of keys into their catalog records now
// (publish, adopt, give up, forget or tombstone, as a reconcile pass
// would), without a pass over the whole catalog: the path of a command or
// a flush stays as short as the keys it changed.
func (c *Cluster) Publish(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	c.reconcileMu.Lock()
	defer c.reconcileMu.Unlock()
	c.apply(ctx, DecideKeys(c.view(), keys...))
	return ctx.Err()
}

// Announce returns once the catalog records of keys (tombstones included)
// are in this node's catalog and every other live member has merged them,
// or after AnnounceTimeout, logging which members did not confirm. A
// command that creates, changes or removes a record calls it before it
// answers, so that a command run right after on another node sees the
// change (read-your-writes across the mesh). Past the timeout the command
// still succeeds: gossip brings the change to the members that did not
// answer.
func (c *Cluster) Announce(ctx context.Context, keys ...string) {
	if err := c.Publish(ctx, keys...); err != nil {
		return
	}
	var es []catalog.Entry
	for _, k := range keys {
		if e, ok := c.cat.Lookup(k); ok {
			es = append(es, e)
		}
	}
	if len(es) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.AnnounceTimeout)
	defer cancel()
	acks, err := c.pushEntries(ctx, es)
	if err != nil {
		c.log.Warn("catalog change not confirmed by every member; gossip brings it to them later",
			"keys", keys, "confirmed", acks, "err", err)
	}
}

// Remove writes a tombstone for key, named what in errors: every node that
// keeps a copy (its creator, the sites it was pushed to) forgets it too.
// The error wraps volume.ErrNotFound when the catalog has no live key.
func (c *Cluster) Remove(key, what string) error {
	e, ok := c.cat.Get(key)
	if !ok {
		return fmt.Errorf("%s: %w", what, volume.ErrNotFound)
	}
	_, err := c.Tombstone(key, e.Epoch)
	return err
}

// RemoveReplica removes the replica name of disk from this node's volumes
// and tombstones its catalog record, as one step against reconcile
// passes: a pass between the two would see the live record of a replica of
// a disk this node owns and does not hold, and add it back
// (OpAddReplica). The error wraps volume.ErrNotFound when neither the
// volumes nor the catalog have it.
func (c *Cluster) RemoveReplica(ctx context.Context, disk, name string) error {
	c.reconcileMu.Lock()
	defer c.reconcileMu.Unlock()
	err := c.vols.RemoveReplica(ctx, disk, name)
	if err != nil && !errors.Is(err, volume.ErrNotFound) {
		return err
	}
	merr := c.Remove(catalog.ReplicaKey(disk, name), "replica "+volume.Ref{Disk: disk, Replica: name}.String())
	if merr == nil || errors.Is(merr, volume.ErrNotFound) && err == nil {
		return nil
	}
	return merr
}

// NextSpacesuitVersion is one above every version of name the catalog has
// ever named, removed ones included: a version number is never reused.
func (c *Cluster) NextSpacesuitVersion(name string) uint64 {
	var top uint64
	for _, e := range c.cat.Snapshot() {
		ref, ok := strings.CutPrefix(e.Key, catalog.SpacesuitPrefix)
		if !ok {
			continue
		}
		if nm, v, err := volume.ParseSpacesuitRef(ref); err == nil && nm == name {
			top = max(top, v)
		}
	}
	return top + 1
}
