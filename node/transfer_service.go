package node

import (
	"github.com/weft-mesh/weft/cluster/transfer"
	"github.com/weft-mesh/weft/volume"
)

// startTransfers builds the node's transfer service over the cluster
// layer and the open volumes; attach runs it.
func (n *meshNode) startTransfers(cfg Config, vols *volume.Manager) error {
	t, err := transfer.New(transfer.Config{
		Net: n.net, Catalog: n.cl, Volumes: vols,
		Blocks: n.blocks, Store: n.local, Bandwidth: float64(cfg.TransferBandwidth),
		Dir: cfg.Path(MeshDir), Clock: n.cl.Clock(), Logger: n.log.With("component", "transfer"),
	})
	if err != nil {
		return err
	}
	n.transfers = t
	return nil
}
