package cluster

import (
	"log/slog"

	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
)

// GossipState carries cat on the network's gossip: the full catalog on
// push-pull, single entries as broadcasts. The composition root gives it
// to the network when it creates it, before the Cluster exists.
func GossipState(cat *catalog.Catalog, log *slog.Logger) meshnet.StateDelegate {
	return gossipState{cat: cat, log: log}
}

type gossipState struct {
	cat *catalog.Catalog
	log *slog.Logger
}

func (s gossipState) LocalState() []byte {
	b, err := catalog.Encode(s.cat.Snapshot())
	if err != nil {
		s.log.Error("encode catalog", "err", err)
		return nil
	}
	return b
}

func (s gossipState) MergeRemoteState(buf []byte) { s.merge(buf) }
func (s gossipState) NotifyMsg(buf []byte)        { s.merge(buf) }

func (s gossipState) merge(buf []byte) {
	es, err := catalog.Decode(buf)
	if err != nil {
		s.log.Warn("bad catalog state from a member", "err", err)
		return
	}
	s.cat.Merge(es)
}
