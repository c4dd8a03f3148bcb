package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

type diskACLOptions struct {
	*globals
	allow []string
	clear bool
	json  bool
}

func newDiskACLCmd(g *globals) *cobra.Command {
	o := &diskACLOptions{globals: g}
	c := &cobra.Command{
		Use:   "acl NAME [--allow CIDR]... [--clear]",
		Short: "Show or set the client networks allowed to open a disk over NBD",
		Long: `Show or set the client networks allowed to open a disk over NBD TCP.

With --allow, the list is replaced by the given networks (CIDR such as
10.0.0.0/8, or a single address). With --clear, any client that reaches
the NBD listener may open the disk. With neither, the list is shown.
Clients on the local NBD socket (HOME/nbd.sock) are always allowed.`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runDiskACL(c.Context(), o, args)
		},
	}
	f := c.Flags()
	f.StringArrayVar(&o.allow, "allow", nil, "allowed client network, CIDR (repeatable)")
	f.BoolVar(&o.clear, "clear", false, "allow any client")
	f.BoolVar(&o.json, "json", false, "print JSON")
	return c
}

func runDiskACL(ctx context.Context, o *diskACLOptions, args []string) error {
	if o.clear && len(o.allow) > 0 {
		return usageError{"disk acl: give --allow or --clear, not both"}
	}
	cl, err := o.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	name := args[0]
	d, err := cl.DiskInfo(ctx, name)
	switch {
	case err != nil:
	case o.clear:
		d, err = cl.SetAllow(ctx, name, nil)
	case len(o.allow) > 0:
		d, err = cl.SetAllow(ctx, name, o.allow)
	}
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(o.stdout, struct {
			Disk  string   `json:"disk"`
			Allow []string `json:"allow"`
		}{d.Name, append([]string{}, d.Allow...)})
	}
	if len(d.Allow) == 0 {
		fmt.Fprintf(o.stdout, "%s: any client may open it over NBD\n", d.Name)
		return nil
	}
	fmt.Fprintf(o.stdout, "%s: NBD clients allowed from %s\n", d.Name, strings.Join(d.Allow, " "))
	return nil
}
