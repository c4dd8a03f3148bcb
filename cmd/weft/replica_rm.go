package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

func newReplicaRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm DISK NAME",
		Aliases: []string{"remove"},
		Short:   "Remove a replica (other replicas and clones are not affected)",
		Args:    exactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			return runReplicaRm(c.Context(), g, args)
		},
	}
}

func runReplicaRm(ctx context.Context, g *globals, args []string) error {
	cl, err := g.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.RemoveReplica(ctx, args[0], args[1]); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "removed replica %s@%s\n", args[0], args[1])
	return nil
}
