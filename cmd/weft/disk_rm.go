package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

type diskRmOptions struct {
	*globals
	force bool
}

func newDiskRmCmd(g *globals) *cobra.Command {
	o := &diskRmOptions{globals: g}
	c := &cobra.Command{
		Use:     "rm [--force] NAME",
		Aliases: []string{"remove"},
		Short:   "Remove a disk (its replicas stay until removed)",
		Long: `Remove a disk. Its replicas stay until removed.

A disk in use on this node is refused, with the list of its users: NBD
connections, open files in a FUSE mount, loop devices on those files.
--force removes it anyway: writes are refused from then on, the disk's
content is kept as replica removed-<time> (every write that returned is in
it), the NBD connections are closed and the open files fail with EIO.`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runDiskRm(c.Context(), o, args)
		},
	}
	c.Flags().BoolVar(&o.force, "force", false, "remove even while in use, keeping the disk's content as a replica first")
	return c
}

func runDiskRm(ctx context.Context, o *diskRmOptions, args []string) error {
	cl, err := o.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	name := args[0]
	if !o.force {
		if err := cl.RemoveDisk(ctx, name); err != nil {
			return err
		}
		fmt.Fprintf(o.stdout, "removed disk %s\n", name)
		return nil
	}
	res, err := cl.ForceRemoveDisk(ctx, name)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.stdout, "removed disk %s; its content is kept as replica %s@%s\n", name, name, res.Kept)
	if len(res.Users) > 0 {
		fmt.Fprintf(o.stdout, "cut off: %s\n", strings.Join(res.Users, ", "))
	}
	return nil
}
