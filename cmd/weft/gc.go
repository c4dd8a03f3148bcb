package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/size"
)

type gcOptions struct {
	*globals
	json bool
}

func newGCCmd(g *globals) *cobra.Command {
	o := &gcOptions{globals: g}
	c := &cobra.Command{
		Use:   "gc",
		Short: "Delete blocks no disk, replica or clone can reach",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			return runGC(c.Context(), o, args)
		},
	}
	c.Flags().BoolVar(&o.json, "json", false, "print JSON")
	return c
}

func runGC(ctx context.Context, o *gcOptions, args []string) error {
	cl, err := o.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	st, err := cl.GC(ctx)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(o.stdout, st)
	}
	fmt.Fprintf(o.stdout, "gc: %s reachable from %s; swept %s (%s), reclaimed %s in %v\n",
		plural(st.Marked, "block"), plural(int64(st.Roots), "root"), plural(st.SweptBlocks, "block"), size.Format(st.SweptBytes),
		size.Format(st.Reclaimed), st.Duration.Round(1e6))
	return nil
}
