package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/size"
)

type scrubOptions struct {
	*globals
	json bool
}

func newScrubCmd(g *globals) *cobra.Command {
	o := &scrubOptions{globals: g}
	c := &cobra.Command{
		Use:   "scrub",
		Short: "Verify every stored block against its hash; exits 1 if any is corrupt",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			return runScrub(c.Context(), o, args)
		},
	}
	c.Flags().BoolVar(&o.json, "json", false, "print JSON")
	return c
}

func runScrub(ctx context.Context, o *scrubOptions, args []string) error {
	cl, err := o.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	res, err := cl.Scrub(ctx)
	if err != nil {
		return err
	}
	if o.json {
		if err := printJSON(o.stdout, res); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(o.stdout, "scrub: checked %s (%s), %d corrupt\n", plural(res.Checked, "block"), size.Format(res.Bytes), len(res.Corrupt))
		for _, c := range res.Corrupt {
			fix := ""
			switch {
			case c.Repaired:
				fix = " (repaired from a peer)"
			case c.Dropped:
				fix = " (garbage, deleted)"
			}
			fmt.Fprintf(o.stdout, "corrupt %s: %s%s\n", c.CID, c.Error, fix)
		}
	}
	var left int64
	for _, c := range res.Corrupt {
		if !c.Repaired && !c.Dropped {
			left++
		}
	}
	if left > 0 {
		return fmt.Errorf("scrub found %s", plural(left, "corrupt block"))
	}
	return nil
}
