package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/size"
	"github.com/weft-mesh/weft/node"
)

func newPeersCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "peers",
		Short: "List the members of the mesh: peer ID, site, state, addresses, capacity",
	}
	return listCmd(g, c, (*node.Client).Peers, listing[node.Peer]{
		header: []string{"PEER ID", "SITE", "STATE", "USED", "FREE", "ADDRS"},
		row: func(p node.Peer) []string {
			id := p.PeerID
			if p.Self {
				id += " (self)"
			}
			return []string{id, p.Site, p.State, size.Format(p.Used), size.Format(p.Free), strings.Join(p.Addrs, " ")}
		},
	})
}
