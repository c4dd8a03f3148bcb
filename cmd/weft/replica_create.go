package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

func newReplicaCreateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "create DISK [NAME]",
		Short: "Take a replica of a disk now (NAME defaults to a timestamp)",
		Args:  rangeArgs(1, 2),
		RunE: func(c *cobra.Command, args []string) error {
			return runReplicaCreate(c.Context(), g, args)
		},
	}
}

func runReplicaCreate(ctx context.Context, g *globals, args []string) error {
	name := ""
	if len(args) == 2 {
		name = args[1]
	}
	cl, err := g.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	r, err := cl.CreateReplica(ctx, args[0], name)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "created replica %s@%s (root %s)\n", r.Disk, r.Name, orDash(r.Root))
	return nil
}
