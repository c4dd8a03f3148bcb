package main

import (
	"context"
	"fmt"
	"github.com/weft-mesh/weft/api"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/size"
)

func newPeersCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "peers",
		Short: "List the members of the mesh: peer ID, site, state, addresses, capacity",
	}
	c.AddCommand(newPeersRmCmd(g))
	return listCmd(g, c, (*api.Client).Peers, listing[api.Peer]{
		header: []string{"PEER ID", "SITE", "STATE", "USED", "FREE", "ADDRS"},
		row: func(p api.Peer) []string {
			id := p.PeerID
			if p.Self {
				id += " (self)"
			}
			return []string{id, p.Site, p.State, size.Format(p.Used), size.Format(p.Free), strings.Join(p.Addrs, " ")}
		},
	})
}

func newPeersRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm PEER",
		Aliases: []string{"remove"},
		Short:   "Forget a dead member on this node (refused while it is alive; it is listed again if it comes back)",
		Args:    exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runPeersRm(c.Context(), g, args)
		},
	}
}

func runPeersRm(ctx context.Context, g *globals, args []string) error {
	cl, err := g.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.ForgetPeer(ctx, args[0]); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "removed peer %s\n", args[0])
	return nil
}
