package main

import "github.com/spf13/cobra"

func newDiskCmd(g *globals) *cobra.Command {
	c := groupCmd("disk", "Create, import, export, list, clone and remove disks")
	c.AddCommand(
		newDiskCreateCmd(g),
		newDiskImportCmd(g),
		newDiskExportCmd(g),
		newDiskLsCmd(g),
		newDiskInfoCmd(g),
		newDiskRmCmd(g),
		newDiskCloneCmd(g),
		newDiskCommitCmd(g),
		newDiskACLCmd(g),
		newDiskCHAPCmd(g),
		newDiskMoveCmd(g),
		newDiskTakeCmd(g),
	)
	return c
}
