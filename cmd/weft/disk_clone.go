package main

import (
	"context"
	"fmt"
	"github.com/weft-mesh/weft/api"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/size"
)

func newDiskCloneCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "clone SOURCE NEWNAME",
		Short: "Make a new writable disk from a disk or replica (SOURCE = DISK or DISK@REPLICA), instantly",
		Args:  exactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			return runDiskClone(c.Context(), g, args)
		},
	}
}

func runDiskClone(ctx context.Context, g *globals, args []string) error {
	src, err := api.ParseRef(args[0])
	if err != nil {
		return err
	}
	cl, err := g.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	info, err := cl.Clone(ctx, src, args[1], "")
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "cloned %s to disk %s: size %s, used %s\n", src, info.Name, size.Format(info.Size), size.Format(info.UsedBytes))
	return nil
}
