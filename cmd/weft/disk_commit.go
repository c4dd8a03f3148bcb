package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

func newDiskCommitCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "commit NAME",
		Short: "Commit a disk's written blocks to the block store now",
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runDiskCommit(c.Context(), g, args)
		},
	}
}

func runDiskCommit(ctx context.Context, g *globals, args []string) error {
	cl, err := g.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	info, err := cl.Commit(ctx, args[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "committed disk %s: root %s\n", info.Name, orDash(info.Root))
	return nil
}
