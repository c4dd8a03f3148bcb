package node

import (
	"context"

	"github.com/ipfs/go-cid"
	"golang.org/x/sys/unix"

	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

// publish, broadcast, reconcile and awaitCatalogEntry forward to the
// cluster for the replication and transfer code, which moves into the
// cluster next.
func (n *meshNode) publish(e catalog.Entry) (catalog.Entry, error) { return n.cl.PutRecord(e) }

// broadcast gossips e, which the caller wrote to the catalog.
func (n *meshNode) broadcast(e catalog.Entry) {
	b, err := catalog.Encode([]catalog.Entry{e})
	if err != nil {
		n.log.Error("encode catalog entry", "key", e.Key, "err", err)
		return
	}
	n.net.Broadcast(b)
}

func (n *meshNode) reconcile(ctx context.Context) { n.cl.Reconcile(ctx) }

func (n *meshNode) awaitCatalogEntry(ctx context.Context, ref volume.Ref) (catalog.Entry, bool) {
	return n.cl.AwaitEntry(ctx, ref)
}

// repair replaces a corrupt local block with a verified copy from the
// mesh: a read through the fetching store does it, and leaves the bad
// copy in place (still reported) when no member has a good one.
func (n *meshNode) repair(ctx context.Context, c cid.Cid) error {
	_, err := n.fetch.Get(ctx, c)
	return err
}

// freeBytes returns the free space of the file system holding path.
func freeBytes(path string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

func rootText(c cid.Cid) string {
	if !c.Defined() {
		return ""
	}
	return c.String()
}
