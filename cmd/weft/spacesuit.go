package main

import (
	"fmt"
	"github.com/weft-mesh/weft/api"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/size"
)

func newSpacesuitCmd(g *globals) *cobra.Command {
	c := groupCmd("spacesuit", "Publish, list and remove golden images (immutable, versioned: NAME@N)")
	c.AddCommand(newSpacesuitPublishCmd(g), newSpacesuitLsCmd(g), newSpacesuitRmCmd(g))
	return c
}

func newSpacesuitPublishCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "publish NAME SOURCE",
		Short: "Publish a disk (DISK) or replica (DISK@REPLICA) as the next version NAME@N",
		Args:  exactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			defer cl.Close()
			info, err := cl.Publish(c.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, info.Ref)
			return nil
		},
	}
}

func newSpacesuitLsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List spacesuit versions (in a mesh: every site's)",
	}
	return listCmd(g, c, (*api.Client).Spacesuits, listing[api.SpacesuitInfo]{
		empty:  "no spacesuits (publish one with: weft spacesuit publish NAME DISK)",
		header: []string{"SPACESUIT", "SIZE", "BLOCK", "SOURCE", "CREATED"},
		row: func(s api.SpacesuitInfo) []string {
			src := s.Source
			if src == "" {
				src = "-"
			}
			return []string{s.Ref, size.Format(s.Size), size.Format(s.BlockSize), src, when(s.Created)}
		},
	})
}

func newSpacesuitRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME@N",
		Aliases: []string{"remove"},
		Short:   "Remove a spacesuit version (disks cloned from it keep their content)",
		Args:    exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			defer cl.Close()
			if err := cl.RemoveSpacesuit(c.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "removed spacesuit %s\n", args[0])
			return nil
		},
	}
}
