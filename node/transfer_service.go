package node

import (
	"context"

	"github.com/weft-mesh/weft/cluster"
	"github.com/weft-mesh/weft/cluster/transfer"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

// startTransfers builds the node's transfer service over the cluster
// layer and the open volumes; attach runs it.
func (n *meshNode) startTransfers(cfg Config, vols *volume.Manager) error {
	t, err := transfer.New(transfer.Config{
		Net: n.net, Catalog: transferCatalog{Cluster: n.cl, n: n}, Volumes: vols,
		Blocks: n.blocks, Store: n.local, Bandwidth: float64(cfg.TransferBandwidth),
		Dir: cfg.Path(MeshDir), Logger: n.log.With("component", "transfer"),
	})
	if err != nil {
		return err
	}
	n.transfers = t
	return nil
}

// transferCatalog is the transfer service's view of the cluster layer:
// the *cluster.Cluster, and meshNode for what is not on it yet (checking
// ownership, reading the catalog by ref, publishing).
type transferCatalog struct {
	*cluster.Cluster
	n *meshNode
}

func (c transferCatalog) CheckOwner(disk string) error { return c.n.checkOwner(disk) }

func (c transferCatalog) Entry(ref volume.Ref) (catalog.Entry, bool) { return c.n.catalogEntry(ref) }

func (c transferCatalog) AwaitEntry(ctx context.Context, ref volume.Ref) (catalog.Entry, bool) {
	return c.n.awaitCatalogEntry(ctx, ref)
}

func (c transferCatalog) List(prefix string) []catalog.Entry { return c.n.cat.List(prefix) }

// Publish runs a whole reconcile: it publishes keys among the rest.
func (c transferCatalog) Publish(ctx context.Context, _ ...string) error {
	c.n.reconcile(ctx)
	return nil
}
