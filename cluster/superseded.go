package cluster

import (
	"slices"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/mesh/catalog"
)

// supersededGrace is how long GC keeps a root an owner published for a
// disk and then replaced with a newer one, when no later root of the disk
// is pushed in full meanwhile. A paused owner supersedes its root on
// waking and learns of a take within seconds; one cut off supersedes it
// during the cut, so the grace covers cuts up to this long. It bounds the
// garbage kept while pushes fail (a member down for good, say).
const supersededGrace = 2 * time.Minute

// supersededRoot is a root this node's record of a disk named before a
// newer record of its own replaced it, and when that happened.
type supersededRoot struct {
	root cid.Cid
	at   time.Time
}

// keepSuperseded keeps the root the catalog's record of e's disk names
// when e, this node's next record of a disk it owns, names another root.
// PutRecord calls it before the catalog write, so that no collection sees
// the catalog without the old root and the kept roots without it either.
// The members that have not merged e yet know the old record as the
// disk's, and one of them may take the disk at its root, fencing this node
// (which keeps its head as a replica). The blocks of that root which the
// newer one overwrote may be here only (its push not done, or failed), and
// once the catalog no longer names it no root here reaches them: a
// collection deleted the only copies of blocks of the root a disk was
// taken at (torture seed 21: the owner, paused past the failure detector,
// committed and published its head on waking, before the take reached
// it). A root pushed in full needs no keeping: its placement sets hold its
// blocks.
//
// The roots are kept until a later root is pushed in full (pushedLocked),
// or supersededGrace has passed, or another node's record of the disk
// arrives (a take, whose root the catalog names then), or this node hands
// the disk over or removes it (forgetSupersededLocked). They are in
// memory: a restart forgets them.
func (c *Cluster) keepSuperseded(e catalog.Entry) {
	disk, isDisk := strings.CutPrefix(e.Key, catalog.DiskPrefix)
	if !isDisk || e.Deleted || e.Owner != c.selfStr {
		return
	}
	old, ok := c.cat.Get(e.Key)
	if !ok || old.Writer != c.selfStr || !old.Root.Defined() || old.Root == e.Root {
		return
	}
	now := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if old.Root == c.pushed[disk] {
		return
	}
	kept := slices.DeleteFunc(c.superseded[disk], func(s supersededRoot) bool { return s.root == old.Root })
	c.superseded[disk] = append(kept, supersededRoot{root: old.Root, at: now})
}

// forgetSupersededLocked stops keeping the superseded roots of e's disk
// when e is not this node's own record of a disk it owns: another node's
// (a take), a handover or a removal. Call it with c.mu held.
func (c *Cluster) forgetSupersededLocked(e catalog.Entry) {
	disk, isDisk := strings.CutPrefix(e.Key, catalog.DiskPrefix)
	if isDisk && (e.Deleted || e.Writer != c.selfStr || e.Owner != c.selfStr) {
		delete(c.superseded, disk)
	}
}

// pushedLocked records root as the last root of disk its placement sets
// confirmed, and stops keeping the roots superseded before it: the record
// naming root went out before its push began, and a push the placement
// sets confirmed shows this node reaches the mesh again, whose members
// merge that record by gossip, so a take elsewhere starts from root or a
// later root. The roots superseded after root (a push that ended late)
// stay. Call it with c.mu held.
func (c *Cluster) pushedLocked(disk string, root cid.Cid) {
	c.pushed[disk] = root
	kept := c.superseded[disk]
	if i := slices.IndexFunc(kept, func(s supersededRoot) bool { return s.root == root }); i >= 0 {
		kept = slices.Clone(kept[i+1:])
	} else {
		kept = nil // all superseded before root, which the catalog names
	}
	if len(kept) == 0 {
		delete(c.superseded, disk)
		return
	}
	c.superseded[disk] = kept
}

// supersededRoots returns the superseded roots GC keeps, forgetting those
// kept for supersededGrace. A mesh of this node alone keeps none: no
// other member can take a disk at them.
func (c *Cluster) supersededRoots() []cid.Cid {
	alone := len(c.net.Members()) <= 1
	now := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []cid.Cid
	for disk, roots := range c.superseded {
		roots = slices.DeleteFunc(roots, func(s supersededRoot) bool { return now.Sub(s.at) >= supersededGrace })
		if len(roots) == 0 {
			delete(c.superseded, disk)
			continue
		}
		c.superseded[disk] = roots
		if alone {
			continue
		}
		for _, s := range roots {
			out = append(out, s.root)
		}
	}
	return out
}
