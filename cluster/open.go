package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/weft-mesh/weft/internal/errkind"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

// awaitEntryPoll is how often AwaitEntry looks for the record again.
const awaitEntryPoll = 50 * time.Millisecond

// Open opens whatever ref names (a disk "DISK", a replica "DISK@REPLICA",
// a spacesuit version "NAME@N"): the local view when this node holds it,
// else a read-only view of the catalog's root, its blocks fetched from
// their holders on read, verified. It is the one way every door (HTTP
// export, NBD, FUSE) opens a ref. A ref neither here nor in the catalog
// fails with Missing's error; one whose disk is here but lacks the replica
// with the volumes' own error.
func (c *Cluster) Open(ctx context.Context, ref volume.Ref) (*volume.View, error) {
	v, err := c.views.OpenView(ctx, ref)
	if err == nil || !errors.Is(err, volume.ErrNotFound) {
		return v, err
	}
	e, ok := c.Entry(ref)
	if !ok {
		if _, derr := c.views.DiskInfo(ctx, ref.Disk); derr == nil {
			return nil, err // the disk is here: its own error says what it lacks
		}
		return nil, c.Missing(ref)
	}
	return c.views.OpenRootView(ref.String(), e.Root, e.Size, e.BlockSize)
}

// Entry finds what ref names in the catalog: a disk ("DISK"), a replica
// ("DISK@REPLICA") or a spacesuit version ("NAME@N"). Tombstones are not
// found.
func (c *Cluster) Entry(ref volume.Ref) (catalog.Entry, bool) {
	if ref.Replica == "" {
		return c.cat.Get(catalog.DiskKey(ref.Disk))
	}
	if e, ok := c.cat.Get(catalog.ReplicaKey(ref.Disk, ref.Replica)); ok {
		return e, true
	}
	if name, v, err := volume.ParseSpacesuitRef(ref.String()); err == nil {
		return c.cat.Get(catalog.SpacesuitKey(name, v))
	}
	return catalog.Entry{}, false
}

// AwaitEntry is Entry that waits up to CatalogSettle for the record to
// arrive: a replica or spacesuit made a moment ago on another node reaches
// this one by gossip within a few hundred milliseconds, and an operator
// who runs the two commands back to back should not see "not found".
func (c *Cluster) AwaitEntry(ctx context.Context, ref volume.Ref) (catalog.Entry, bool) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	settled := c.clock.After(c.cfg.CatalogSettle)
	tick := c.clock.NewTicker(awaitEntryPoll)
	defer tick.Stop()
	for {
		if e, ok := c.Entry(ref); ok {
			return e, true
		}
		select {
		case <-ctx.Done():
			return c.Entry(ref)
		case <-settled:
			return c.Entry(ref)
		case <-tick.C():
		}
	}
}

// List returns the live catalog entries whose keys start with prefix.
func (c *Cluster) List(prefix string) []catalog.Entry { return c.cat.List(prefix) }

// Missing explains why this node has no record of ref, local or in the
// catalog: removed (and by whom and when), or never known to the mesh. The
// error wraps volume.ErrNotFound.
func (c *Cluster) Missing(ref volume.Ref) error {
	kind, keys := "disk", []string{catalog.DiskKey(ref.Disk)}
	if ref.Replica != "" {
		kind, keys = "replica", []string{catalog.ReplicaKey(ref.Disk, ref.Replica)}
		if name, v, err := volume.ParseSpacesuitRef(ref.String()); err == nil {
			kind, keys = "replica or spacesuit version", append(keys, catalog.SpacesuitKey(name, v))
		}
	}
	for _, k := range keys {
		if e, ok := c.cat.Lookup(k); ok && e.Deleted {
			kind, _, _ = strings.Cut(e.Key, "/")
			return fmt.Errorf("%s %q was removed from the mesh by %s at %s: %w",
				kind, ref.String(), e.Writer, e.Modified.UTC().Format(time.RFC3339), volume.ErrNotFound)
		}
	}
	return errkind.Errorf(volume.ErrNotFound, "%s %q: not on this node nor in the mesh catalog", kind, ref.String())
}

// Unavailable explains a failed read of ref from the catalog when the node
// that owns it is not alive: the blocks of its last committed root may be
// on that node only. Otherwise it returns err.
func (c *Cluster) Unavailable(ref volume.Ref, err error) error {
	e, ok := c.cat.Get(catalog.DiskKey(ref.Disk))
	if !ok || e.Owner == c.selfStr || c.Alive(e.Owner) {
		return err
	}
	return fmt.Errorf("disk %q is owned by %s, which is not alive; its last committed root is %s: %w",
		ref.Disk, e.Owner, volume.RootText(e.Root), err)
}
