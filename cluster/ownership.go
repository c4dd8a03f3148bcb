package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/weft-mesh/weft/heal"
	"github.com/weft-mesh/weft/internal/errkind"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/volume"
)

// ErrNotOwner is matched (errors.Is) by the error of a command that would
// write a disk, or its replicas, on a node that does not own it. Nothing
// was written: the owner is the one place a disk's head changes, and
// writes taken anywhere else would only be fenced into a replica.
var ErrNotOwner = errors.New("not the owner of the disk")

// notOwnerError names the owner and how to reach it.
type notOwnerError struct {
	disk, owner, self string
	alive             bool
}

func (e *notOwnerError) Error() string {
	if !e.alive {
		return fmt.Sprintf("disk %q: owned by %s, which is not alive; take it here first with `weft disk take %s`", e.disk, e.owner, e.disk)
	}
	return fmt.Sprintf("disk %q: owned by %s; run it there, or move it here first with `weft disk move %s --to %s` on %s",
		e.disk, e.owner, e.disk, e.self, e.owner)
}

func (e *notOwnerError) Is(target error) bool { return target == ErrNotOwner }

// CheckOwner returns nil when this node may write disk: it owns it, or the
// catalog does not name it (a new disk). Otherwise it returns an error
// matching ErrNotOwner that names the owner. It is the one check every
// command writing a disk head or its replicas makes before it writes.
func (c *Cluster) CheckOwner(disk string) error {
	e, ok := c.cat.Get(catalog.DiskKey(disk))
	if !ok || e.Owner == c.selfStr {
		return nil
	}
	return &notOwnerError{disk: disk, owner: e.Owner, self: c.selfStr, alive: c.Alive(e.Owner)}
}

// Move hands disk, which this node owns, to the live member to: the head
// is committed and its root pushed to the placement set (too few live
// members is no error: heal copies the rest), then the catalog names to
// as the owner at the next epoch, and the change is announced. The new
// owner adopts the disk and this node gives its head up. It returns the
// new entry and the committed head's info. Errors are DecideMove's (to is
// this node, not alive, or the disk not published as this node's yet),
// the commit's, the push's and the catalog's.
func (c *Cluster) Move(ctx context.Context, disk string, to meshnet.PeerID) (catalog.Entry, volume.DiskInfo, error) {
	if _, err := DecideMove(disk, catalog.Entry{}, true, c.self, to, c.Alive(to.String()), volume.DiskInfo{}); errors.Is(err, volume.ErrInvalid) || errors.Is(err, volume.ErrNotFound) {
		return catalog.Entry{}, volume.DiskInfo{}, err // before the commit, as the checks that need no head
	}
	info, err := c.vols.Commit(ctx, disk)
	if err != nil {
		return catalog.Entry{}, info, err
	}
	root := info.Root
	cur, found := c.cat.Get(catalog.DiskKey(disk))
	e, err := DecideMove(disk, cur, found, c.self, to, c.Alive(to.String()), info)
	if err != nil {
		return catalog.Entry{}, info, err
	}
	switch _, err := c.pusher.Push(ctx, c.Pushed(disk), root, info.Replicas); {
	case err == nil:
		e.Held = root
	case !errors.Is(err, heal.ErrTooFewNodes):
		return catalog.Entry{}, info, fmt.Errorf("move: replicate before handover: %w", err)
	}
	if e, err = c.PutRecord(e); err != nil {
		return catalog.Entry{}, info, fmt.Errorf("move: %w", err)
	}
	c.Announce(ctx, e.Key)
	c.log.Info("disk handed over", "disk", disk, "to", to, "epoch", e.Epoch)
	return e, info, nil
}

// Take makes this node the owner of disk, whose owner is dead (or, with
// force, alive but unreachable), at the next epoch, which fences the old
// owner; then adopts the disk here at the catalog's root and announces
// the change. Errors are DecideTake's (no live entry, owned here already,
// owner alive without force), checkRootReadable's (no live member serves
// the root's map), the catalog's and the adopt's.
//
// The catalog write and the adopt happen under the reconcile lock: a pass
// between them would see the disk owned and written by this node but not
// held here, take it for a removal and tombstone it.
func (c *Cluster) Take(ctx context.Context, disk string, force bool) (catalog.Entry, error) {
	// The newest record any reachable member holds first: one this node
	// missed may name a newer held root, and the members that merged it
	// collect the blocks only the older one reaches.
	if asked, answered, err := c.freshen(ctx, catalog.DiskKey(disk)); err != nil {
		return catalog.Entry{}, fmt.Errorf("take: %w", err)
	} else if answered < asked {
		c.log.Warn("take: not every live member said which record of the disk it holds",
			"disk", disk, "asked", asked, "answered", answered)
	}
	e, err := c.take(ctx, disk, force)
	if err != nil {
		return e, err
	}
	c.Announce(ctx, e.Key)
	c.log.Warn("disk taken over", "disk", disk, "epoch", e.Epoch)
	return e, nil
}

func (c *Cluster) take(ctx context.Context, disk string, force bool) (catalog.Entry, error) {
	c.reconcileMu.Lock()
	defer c.reconcileMu.Unlock()
	cur, found := c.cat.Get(catalog.DiskKey(disk))
	e, err := DecideTake(disk, cur, found, c.self, found && c.Alive(cur.Owner), force)
	if err != nil {
		return e, err
	}
	if err := c.checkRootReadable(ctx, e, cur.Owner); err != nil {
		return catalog.Entry{}, err
	}
	if e.Root != cur.Root {
		c.log.Warn("take: the disk's newest root was not replicated in full; taken at the newest root that was",
			"disk", disk, "root", e.Root, "newest", cur.Root, "old_owner", cur.Owner)
	}
	if e, err = c.PutRecord(e); err != nil {
		return e, fmt.Errorf("take: %w", err)
	}
	if err := c.adopt(ctx, e); err != nil {
		return e, c.handBack(cur, e, fmt.Errorf("take: %w", err))
	}
	return e, nil
}

// checkRootReadable refuses a take at taken's root, if no live member
// serves that root's map, before anything changes. A disk no push has
// confirmed in full yet is taken at its newest root (DecideTake), whose
// blocks may be held by its old owner alone: a take would fence the one
// node that holds them. Refused, the disk stays with that owner, which
// serves it again when it comes back.
func (c *Cluster) checkRootReadable(ctx context.Context, taken catalog.Entry, oldOwner string) error {
	if !taken.Root.Defined() {
		return nil
	}
	if _, err := c.views.RootBytes(ctx, taken.Root, taken.BlockSize); err != nil {
		disk := strings.TrimPrefix(taken.Key, catalog.DiskPrefix)
		return errkind.Errorf(ErrConflict, "take: disk %q: no live member serves the map of its root %s, "+
			"so its owner %s may hold the only copy of its newest blocks: bring that node back, or wait until it is reachable (%v)",
			disk, taken.Root, oldOwner, err)
	}
	return nil
}

// handBack undoes a take whose adopt failed (a full disk, say): taken, the
// catalog's version, goes back to prev's owner at the next epoch, written
// by this node. Left as it was, a disk owned and written here but not held
// here is one removed here, and the next pass would tombstone it across
// the mesh; handed back, it is one moved away, which no pass tombstones,
// and a retried take finds it. It returns takeErr, with the hand-back's
// error if that failed too.
func (c *Cluster) handBack(prev, taken catalog.Entry, takeErr error) error {
	back := taken
	back.Owner, back.Epoch = prev.Owner, taken.Epoch+1
	if _, err := c.PutRecord(back); err != nil {
		return errors.Join(takeErr, fmt.Errorf("take: hand disk back to %s: %w", prev.Owner, err))
	}
	c.log.Warn("take failed: disk handed back to its owner", "key", taken.Key, "owner", prev.Owner, "epoch", back.Epoch, "err", takeErr)
	return takeErr
}
