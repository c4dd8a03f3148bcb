package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/size"
)

type peersOptions struct {
	*globals
	json bool
}

func newPeersCmd(g *globals) *cobra.Command {
	o := &peersOptions{globals: g}
	c := &cobra.Command{
		Use:   "peers",
		Short: "List the members of the mesh: peer ID, site, state, addresses, capacity",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := o.client()
			if err != nil {
				return err
			}
			defer cl.Close()
			peers, err := cl.Peers(c.Context())
			if err != nil {
				return err
			}
			if o.json {
				return printJSON(o.stdout, peers)
			}
			tw := newTable(o.stdout)
			fmt.Fprintln(tw, "PEER ID\tSITE\tSTATE\tUSED\tFREE\tADDRS")
			for _, p := range peers {
				id := p.PeerID
				if p.Self {
					id += " (self)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", id, p.Site, p.State, size.Format(p.Used), size.Format(p.Free), strings.Join(p.Addrs, " "))
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&o.json, "json", false, "print JSON")
	return c
}
