package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

func newDiskRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"remove"},
		Short:   "Remove a disk (its replicas stay until removed)",
		Args:    exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runDiskRm(c.Context(), g, args)
		},
	}
}

func runDiskRm(ctx context.Context, g *globals, args []string) error {
	cl, err := g.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.RemoveDisk(ctx, args[0]); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "removed disk %s\n", args[0])
	return nil
}
