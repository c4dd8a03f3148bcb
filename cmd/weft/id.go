package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/node"
)

type idOptions struct {
	*globals
	json bool
}

func newIDCmd(g *globals) *cobra.Command {
	o := &idOptions{globals: g}
	c := &cobra.Command{
		Use:   "id",
		Short: "Print this node's peer ID and the multiaddrs other nodes join it by",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := o.client()
			if err != nil {
				return err
			}
			defer cl.Close()
			id, err := cl.ID(c.Context())
			if err != nil {
				return err
			}
			if o.json {
				return printJSON(o.stdout, id)
			}
			fmt.Fprintf(o.stdout, "peer id: %s\n", id.PeerID)
			for _, a := range id.Addrs {
				fmt.Fprintf(o.stdout, "  %s\n", a)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&o.json, "json", false, "print JSON (peer_id, addrs)")
	return c
}

func newTokenCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "token",
		Short: "Print a join token (the mesh's secret and this node's addresses) for weft init --join-token; keep it secret",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			home, err := g.homeDir()
			if err != nil {
				return err
			}
			secret, err := os.ReadFile(filepath.Join(home, node.ClusterSecretFile))
			if err != nil {
				return fmt.Errorf("cluster secret: %w", err)
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			defer cl.Close()
			id, err := cl.ID(c.Context())
			if err != nil {
				return err
			}
			tok, err := node.JoinToken(string(secret), id.Addrs)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, tok)
			return nil
		},
	}
}

func newJoinCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "join MULTIADDR...",
		Short: "Join the mesh through any of its members (.../p2p/<peer id>)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runJoin(c.Context(), g, args)
		},
	}
}

func runJoin(ctx context.Context, g *globals, args []string) error {
	cl, err := g.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	res, err := cl.Join(ctx, args)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "joined: %d of %d addresses answered; the mesh has %d members\n", res.Joined, len(args), res.Members)
	return nil
}
