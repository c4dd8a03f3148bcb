package main

import "github.com/spf13/cobra"

func newReplicaCmd(g *globals) *cobra.Command {
	c := groupCmd("replica", "Instant, independent replicas (snapshots) of a disk, and time travel")
	c.AddCommand(
		newReplicaCreateCmd(g),
		newReplicaLsCmd(g),
		newReplicaRestoreCmd(g),
		newReplicaRmCmd(g),
	)
	return c
}
