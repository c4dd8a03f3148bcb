package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

func newReplicaRestoreCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "restore DISK NAME",
		Short: "Move a disk's head back (or forward) to a replica: time travel",
		Long: "Move a disk's head to a replica. If the current content is not saved in a\n" +
			"replica yet, a backup replica of it is taken first, so nothing is lost.",
		Args: exactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			return runReplicaRestore(c.Context(), g, args)
		},
	}
}

func runReplicaRestore(ctx context.Context, g *globals, args []string) error {
	cl, err := g.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	res, err := cl.Restore(ctx, args[0], args[1])
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "restored disk %s to replica %s\n", args[0], args[1])
	if res.Backup != "" {
		fmt.Fprintf(g.stdout, "the previous content is kept as replica %s@%s\n", args[0], res.Backup)
	}
	return nil
}
