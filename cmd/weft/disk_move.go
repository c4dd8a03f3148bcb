package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newDiskMoveCmd(g *globals) *cobra.Command {
	var to string
	c := &cobra.Command{
		Use:   "move NAME --to PEER",
		Short: "Hand a disk this node owns over to another member (raises its epoch)",
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if to == "" {
				return usageError{"--to PEER is required"}
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			defer cl.Close()
			info, err := cl.Move(c.Context(), args[0], to)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "disk %s handed over to %s (epoch %d)\n", info.Name, info.Owner, info.Epoch)
			return nil
		},
	}
	c.Flags().StringVar(&to, "to", "", "peer ID of the new owner")
	return c
}

func newDiskTakeCmd(g *globals) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "take NAME",
		Short: "Become the owner of a disk whose owner is dead; the old owner is fenced",
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			defer cl.Close()
			info, err := cl.Take(c.Context(), args[0], force)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "disk %s is owned by this node now (epoch %d)\n", info.Name, info.Epoch)
			return nil
		},
	}
	c.Flags().BoolVar(&force, "force", false, "take it even though the owner looks alive (it is cut off): its later writes are fenced")
	return c
}
