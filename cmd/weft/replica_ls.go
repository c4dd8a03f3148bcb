package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/size"
)

type replicaLsOptions struct {
	*globals
	json bool
}

func newReplicaLsCmd(g *globals) *cobra.Command {
	o := &replicaLsOptions{globals: g}
	c := &cobra.Command{
		Use:     "ls DISK",
		Aliases: []string{"list"},
		Short:   "List a disk's replicas, oldest first",
		Args:    exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runReplicaLs(c.Context(), o, args)
		},
	}
	c.Flags().BoolVar(&o.json, "json", false, "print JSON")
	return c
}

func runReplicaLs(ctx context.Context, o *replicaLsOptions, args []string) error {
	cl, err := o.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	reps, err := cl.ListReplicas(ctx, args[0])
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(o.stdout, reps)
	}
	if len(reps) == 0 {
		fmt.Fprintf(o.stdout, "disk %s has no replicas (take one with: weft replica create %s)\n", args[0], args[0])
		return nil
	}
	tw := newTable(o.stdout)
	fmt.Fprintln(tw, "NAME\tCREATED\tSIZE\tUSED\tROOT")
	for _, r := range reps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, when(r.Created), size.Format(r.Size), size.Format(r.UsedBytes), orDash(r.Root))
	}
	return tw.Flush()
}
