package cluster

import (
	"context"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
)

// provideTimeout bounds one DHT provider announcement of a root.
const provideTimeout = 30 * time.Second

// PutRecord writes e to the catalog and gossips it.
func (c *Cluster) PutRecord(e catalog.Entry) (catalog.Entry, error) {
	e, err := c.cat.Put(e)
	if err != nil {
		return e, err
	}
	c.broadcast(e)
	if p, ok := c.net.(meshnet.Provider); ok && e.Root.Defined() {
		// A provider record per root, never per block: peers outside
		// the catalog's reach (other clusters' DHT walks) find the
		// holder of a disk or spacesuit by its root.
		go func(root cid.Cid) {
			ctx, cancel := context.WithTimeout(c.life, provideTimeout)
			defer cancel()
			if err := p.Provide(ctx, root); err != nil {
				c.log.Debug("provide root", "root", root, "err", err)
			}
		}(e.Root)
	}
	return e, nil
}

// Tombstone removes key (at epoch) from the catalog and gossips the
// tombstone.
func (c *Cluster) Tombstone(key string, epoch uint64) (catalog.Entry, error) {
	d, err := c.cat.Delete(key, epoch)
	if err != nil {
		return d, err
	}
	c.broadcast(d)
	return d, nil
}

// Merge merges entries learned out of band (a transfer's sender names the
// records it sent) and gossips nothing: their writers did.
func (c *Cluster) Merge(es []catalog.Entry) { c.cat.Merge(es) }

func (c *Cluster) broadcast(e catalog.Entry) {
	b, err := catalog.Encode([]catalog.Entry{e})
	if err != nil {
		c.log.Error("encode catalog entry", "key", e.Key, "err", err)
		return
	}
	c.net.Broadcast(b)
}
