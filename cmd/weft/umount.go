package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"
)

type umountOptions struct {
	*globals
	lazy bool
}

func newUmountCmd(g *globals) *cobra.Command {
	o := &umountOptions{globals: g}
	c := &cobra.Command{
		Use:   "umount [--lazy] DIR",
		Short: "Unmount a weft mount",
		Long: `Unmount the weft mount at DIR. If a file in it is open (a loop device, a
shell in it) the unmount is refused; --lazy detaches DIR at once and lets the
open files finish.`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runUmount(c.Context(), o, args)
		},
	}
	c.Flags().BoolVarP(&o.lazy, "lazy", "l", false, "detach now even if files are open; the mount ends when they close")
	return c
}

func runUmount(ctx context.Context, o *umountOptions, args []string) error {
	dir, err := filepath.Abs(args[0])
	if err != nil {
		return fmt.Errorf("mount point %s: %w", args[0], err)
	}
	cl, err := o.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.Unmount(ctx, dir, o.lazy); err != nil {
		return err
	}
	fmt.Fprintf(o.stdout, "unmounted %s\n", dir)
	return nil
}
