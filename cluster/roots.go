package cluster

import (
	"slices"
	"strings"

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
// its disks at (noteSupersededLocked): GC keeps their blocks.
func (c *Cluster) CatalogRoots() []cid.Cid {
	out := c.cfg.LocalRoots()
	for _, e := range c.cat.List("") {
		if e.Root.Defined() {
			out = append(out, e.Root)
		}
	}
	c.mu.Lock()
	for _, roots := range c.superseded {
		out = append(out, roots...)
	}
	c.mu.Unlock()
	return out
}

// noteSupersededLocked keeps old's root when e, this node's newer record
// of a disk it owns, names another root. The members that have not merged
// e yet know old as the disk's record, and one of them may take the disk
// at old's root (fencing this node, which keeps its head as a replica).
// The blocks of old that the newer root overwrote may be here only (the
// push of old not done, or failed), and with the catalog no longer naming
// old no root here reaches them: a collection deleted the only copies of
// the blocks of the root the disk was taken at (torture seed 21). A root
// pushed in full needs no keeping: the placement sets hold its blocks.
// The roots are kept until a later root is pushed in full (pushedLocked),
// and forgotten when another node's record of the disk arrives (a take,
// whose root the catalog names then) or this node hands the disk over or
// removes it. They are in memory: a restart forgets them. Call it with
// c.mu held.
func (c *Cluster) noteSupersededLocked(old, e catalog.Entry, ok bool) {
	disk, isDisk := strings.CutPrefix(e.Key, catalog.DiskPrefix)
	if !isDisk {
		return
	}
	if e.Deleted || e.Writer != c.selfStr || e.Owner != c.selfStr {
		delete(c.superseded, disk)
		return
	}
	if !ok || old.Deleted || old.Writer != c.selfStr || !old.Root.Defined() || old.Root == e.Root ||
		old.Root == c.pushed[disk] || slices.Contains(c.superseded[disk], old.Root) {
		return
	}
	c.superseded[disk] = append(c.superseded[disk], old.Root)
}

// pushedLocked records root as the last root of disk its placement sets
// confirmed, and stops keeping the roots superseded before it: the record
// naming root went out before its push began, and a push the placement
// sets confirmed shows this node reaches the mesh, whose members merge
// that record by gossip, so a take elsewhere starts from root or a later
// root. The roots superseded after root (a push that ended late) stay.
// Call it with c.mu held.
func (c *Cluster) pushedLocked(disk string, root cid.Cid) {
	c.pushed[disk] = root
	rest := c.superseded[disk]
	if i := slices.Index(rest, root); i >= 0 {
		rest = rest[i+1:]
	} else {
		rest = nil // all older than root, which the catalog names or will
	}
	if len(rest) == 0 {
		delete(c.superseded, disk)
		return
	}
	c.superseded[disk] = slices.Clone(rest)
}
