package node

import (
	"path/filepath"

	"github.com/weft-mesh/weft/cluster/transfer"
)

// startTransfers builds the node's transfer service over the cluster
// layer, registering its protocols; NewCore attaches the volumes once they
// are open, and Core.Run runs it.
func (n *meshNode) startTransfers(cfg CoreConfig) error {
	t, err := transfer.New(transfer.Config{
		Net: n.net, Catalog: n.cl,
		Blocks: n.blocks, Store: n.local, Bandwidth: float64(cfg.TransferBandwidth),
		Dir: filepath.Join(cfg.Home, MeshDir), Clock: n.cl.Clock(), Logger: n.log.With("component", "transfer"),
	})
	if err != nil {
		return err
	}
	n.transfers = t
	return nil
}
