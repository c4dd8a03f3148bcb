package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/size"
)

type diskLsOptions struct {
	*globals
	json bool
}

func newDiskLsCmd(g *globals) *cobra.Command {
	o := &diskLsOptions{globals: g}
	c := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List disks",
		Args:    exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			return runDiskLs(c.Context(), o, args)
		},
	}
	c.Flags().BoolVar(&o.json, "json", false, "print JSON")
	return c
}

func runDiskLs(ctx context.Context, o *diskLsOptions, args []string) error {
	cl, err := o.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	disks, err := cl.ListDisks(ctx)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(o.stdout, disks)
	}
	if len(disks) == 0 {
		fmt.Fprintln(o.stdout, "no disks (create one with: weft disk create NAME --size SIZE)")
		return nil
	}
	tw := newTable(o.stdout)
	fmt.Fprintln(tw, "NAME\tSIZE\tUSED\tDIRTY\tBLOCK\tR\tREPLICAS\tOWNER\tCOMMITTED")
	for _, d := range disks {
		owner := "-"
		if n := len(d.Owner); n > 8 {
			owner = "…" + d.Owner[n-8:] // the full ID is in disk info and --json
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", d.Name, size.Format(d.Size), size.Format(d.UsedBytes),
			size.Format(d.DirtyBytes), size.Format(d.BlockSize), d.Replicas, d.ReplicaCount, owner, when(d.Committed))
	}
	return tw.Flush()
}
