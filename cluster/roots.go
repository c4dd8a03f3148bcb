package cluster

import (
	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/heal"
	"github.com/weft-mesh/weft/mesh/catalog"
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
		for _, r := range entryRoots(e) {
			out = append(out, heal.Root{Root: r, Replicas: max(e.Replicas, 1), Local: local[r]})
			delete(local, r)
		}
	}
	for r := range local { // partial transfers of roots the catalog no longer names
		out = append(out, heal.Root{Root: r, Replicas: 1, Local: true})
	}
	return out
}

// CatalogRoots is every root of the catalog, held roots included, and of
// the transfers received in part: GC keeps their blocks.
func (c *Cluster) CatalogRoots() []cid.Cid {
	out := c.cfg.LocalRoots()
	for _, e := range c.cat.List("") {
		out = append(out, entryRoots(e)...)
	}
	return out
}

// entryRoots is the roots a live catalog record keeps in the mesh: its
// root and, for a disk whose newest root is not replicated in full yet,
// its held root, which a take starts from (DecideTake). Both are kept at
// R copies until a later push confirms the newer one.
func entryRoots(e catalog.Entry) []cid.Cid {
	switch {
	case !e.Root.Defined():
		return nil
	case e.Held.Defined() && e.Held != e.Root:
		return []cid.Cid{e.Root, e.Held}
	}
	return []cid.Cid{e.Root}
}
