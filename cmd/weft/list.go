package main

import (
	"context"
	"fmt"
	"github.com/weft-mesh/weft/api"
	"strings"

	"github.com/spf13/cobra"
)

// listing is how a list command prints what it fetched: JSON with --json,
// a hint when there is nothing, else a table.
type listing[T any] struct {
	empty  string           // printed for an empty list ("" prints the header alone)
	header []string         // column names
	row    func(T) []string // one item's cells
}

// listCmd completes c, a command without arguments, into one that fetches
// a list from the daemon and prints it as l says, with a --json flag.
func listCmd[T any](g *globals, c *cobra.Command, fetch func(*api.Client, context.Context) ([]T, error), l listing[T]) *cobra.Command {
	var asJSON bool
	c.Args = exactArgs(0)
	c.RunE = func(c *cobra.Command, args []string) error {
		cl, err := g.client()
		if err != nil {
			return err
		}
		defer cl.Close()
		list, err := fetch(cl, c.Context())
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(g.stdout, list)
		}
		if len(list) == 0 && l.empty != "" {
			fmt.Fprintln(g.stdout, l.empty)
			return nil
		}
		tw := newTable(g.stdout)
		fmt.Fprintln(tw, strings.Join(l.header, "\t"))
		for _, item := range list {
			fmt.Fprintln(tw, strings.Join(l.row(item), "\t"))
		}
		return tw.Flush()
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}
