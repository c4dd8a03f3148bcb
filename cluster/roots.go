package cluster

import (
	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/heal"
)

// HealRoots lists every root of the catalog for heal; the roots this node
// uses itself (its volumes' and its partial transfers') are marked local,
// so their blocks stay here as a cache.
func (c *Cluster) HealRoots() []heal.Root {
	local := map[cid.Cid]bool{}
	for _, r := range c.vols.Records() {
		local[r.Root] = true
	}
	for _, r := range c.cfg.LocalRoots() {
		local[r] = true
	}
	var out []heal.Root
	for _, e := range c.cat.List("") {
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

// CatalogRoots is every root of the catalog, of the transfers received in
// part, and those this node superseded that other members may still take
// its disks at (keepSuperseded): GC keeps their blocks.
func (c *Cluster) CatalogRoots() []cid.Cid {
	out := c.cfg.LocalRoots()
	for _, e := range c.cat.List("") {
		if e.Root.Defined() {
			out = append(out, e.Root)
		}
	}
	return append(out, c.supersededRoots()...)
}
