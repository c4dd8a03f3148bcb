package node

import (
	"context"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/heal"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/volume"
)

// publish writes e to the catalog and gossips it.
func (n *meshNode) publish(e catalog.Entry) (catalog.Entry, error) {
	e, err := n.cat.Put(e)
	if err != nil {
		return e, err
	}
	n.broadcast(e)
	if p, ok := n.net.(meshnet.Provider); ok && e.Root.Defined() {
		// A provider record per root, never per block: peers outside
		// the catalog's reach (other clusters' DHT walks) find the
		// holder of a disk or spacesuit by its root.
		go func(root cid.Cid) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := p.Provide(ctx, root); err != nil {
				n.log.Debug("provide root", "root", root, "err", err)
			}
		}(e.Root)
	}
	return e, nil
}

func (n *meshNode) broadcast(e catalog.Entry) {
	b, err := catalog.Encode([]catalog.Entry{e})
	if err != nil {
		n.log.Error("encode catalog entry", "key", e.Key, "err", err)
		return
	}
	n.net.Broadcast(b)
}

func (n *meshNode) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// healRoots lists every root of the catalog for heal; the roots this node
// uses itself are marked local, so their blocks stay here as a cache.
func (n *meshNode) healRoots() []heal.Root {
	local := map[cid.Cid]bool{}
	for _, r := range n.vols.Records() {
		local[r.Root] = true
	}
	for _, r := range n.partial.list() {
		local[r] = true
	}
	var out []heal.Root
	for _, e := range n.cat.List("") {
		if e.Root.Defined() {
			out = append(out, heal.Root{Root: e.Root, Replicas: max(e.Replicas, 1), Local: local[e.Root]})
			delete(local, e.Root)
		}
	}
	for r := range local { // partial transfers of roots the catalog no longer names
		out = append(out, heal.Root{Root: r, Replicas: 1, Local: true})
	}
	return out
}

// catalogRoots is every root of the catalog and of the transfers received
// in part: GC keeps their blocks.
func (n *meshNode) catalogRoots() []cid.Cid {
	out := n.partial.list()
	for _, e := range n.cat.List("") {
		if e.Root.Defined() {
			out = append(out, e.Root)
		}
	}
	return out
}

// syncFlush is the volume's SyncFlush: it returns once root's blocks are on
// their placement sets.
func (n *meshNode) syncFlush(ctx context.Context, disk string, root cid.Cid) error {
	e, ok := n.cat.Get(catalog.DiskKey(disk))
	if ok && e.Owner != n.selfStr {
		return fmt.Errorf("disk %q is owned by %s now: %w", disk, e.Owner, catalog.ErrFenced)
	}
	r := volume.DefaultReplicas
	for _, rec := range n.vols.Records() {
		if rec.Disk == disk && rec.Replica == "" {
			r = rec.Replicas
		}
	}
	n.mu.Lock()
	prev := n.pushed[disk]
	n.mu.Unlock()
	if _, err := n.pusher.Push(ctx, prev, root, r); err != nil {
		return err
	}
	n.mu.Lock()
	n.pushed[disk] = root
	n.mu.Unlock()
	// The holders must know the root before the flush returns, or a
	// takeover after this node's death would start from an older one.
	n.reconcile(ctx)
	e, ok = n.cat.Get(catalog.DiskKey(disk))
	if !ok || e.Root != root {
		return fmt.Errorf("disk %q: root %s not in the catalog after the flush", disk, root)
	}
	acks, err := n.pushEntries(ctx, []catalog.Entry{e})
	if acks < r-1 {
		return fmt.Errorf("disk %q: %d of %d other nodes confirmed the new root: %w", disk, acks, r-1, err)
	}
	return nil
}

func (n *meshNode) saveCatalog() error {
	n.mu.Lock()
	dirty := n.dirty
	n.dirty = false
	n.mu.Unlock()
	if !dirty {
		return nil
	}
	if err := n.cat.Save(n.catPath); err != nil {
		n.mu.Lock()
		n.dirty = true
		n.mu.Unlock()
		return fmt.Errorf("save catalog: %w", err)
	}
	return nil
}

// repair replaces a corrupt local block with a verified copy from the
// mesh: a read through the fetching store does it, and leaves the bad
// copy in place (still reported) when no member has a good one.
func (n *meshNode) repair(ctx context.Context, c cid.Cid) error {
	_, err := n.fetch.Get(ctx, c)
	return err
}
