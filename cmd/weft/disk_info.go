package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/size"
)

type diskInfoOptions struct {
	*globals
	json bool
}

func newDiskInfoCmd(g *globals) *cobra.Command {
	o := &diskInfoOptions{globals: g}
	c := &cobra.Command{
		Use:   "info NAME",
		Short: "Show a disk",
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runDiskInfo(c.Context(), o, args)
		},
	}
	c.Flags().BoolVar(&o.json, "json", false, "print JSON")
	return c
}

func runDiskInfo(ctx context.Context, o *diskInfoOptions, args []string) error {
	cl, err := o.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	d, err := cl.DiskInfo(ctx, args[0])
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(o.stdout, d)
	}
	tw := newTable(o.stdout)
	fmt.Fprintf(tw, "name:\t%s\n", d.Name)
	fmt.Fprintf(tw, "size:\t%s (%d bytes)\n", size.Format(d.Size), d.Size)
	fmt.Fprintf(tw, "block size:\t%s\n", size.Format(d.BlockSize))
	fmt.Fprintf(tw, "used:\t%s\n", size.Format(d.UsedBytes))
	fmt.Fprintf(tw, "dirty:\t%s\n", size.Format(d.DirtyBytes))
	if d.CommitError != "" {
		fmt.Fprintf(tw, "commit error:\t%s\n", d.CommitError)
	}
	fmt.Fprintf(tw, "replication:\t%d copies (%d blocks under-replicated)\n", d.Replicas, d.UnderReplicated)
	if d.Owner != "" {
		fmt.Fprintf(tw, "owner:\t%s (epoch %d)\n", d.Owner, d.Epoch)
	}
	fmt.Fprintf(tw, "replicas:\t%d\n", d.ReplicaCount)
	fmt.Fprintf(tw, "root:\t%s\n", orDash(d.Root))
	if d.Origin != "" {
		fmt.Fprintf(tw, "cloned from:\t%s\n", d.Origin)
	}
	if d.Creator != "" {
		fmt.Fprintf(tw, "made by:\t%s\n", d.Creator)
	}
	fmt.Fprintf(tw, "created:\t%s\n", when(d.Created))
	fmt.Fprintf(tw, "committed:\t%s\n", when(d.Committed))
	fmt.Fprintf(tw, "allow:\t%s\n", orDash(strings.Join(d.Allow, " ")))
	fmt.Fprintf(tw, "iscsi initiators:\t%s\n", orDash(strings.Join(d.Initiators, " ")))
	fmt.Fprintf(tw, "iscsi chap:\t%s\n", chapText(d))
	return tw.Flush()
}
