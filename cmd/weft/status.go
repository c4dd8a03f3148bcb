package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/internal/size"
)

type statusOptions struct {
	*globals
	json bool
}

func newStatusCmd(g *globals) *cobra.Command {
	o := &statusOptions{globals: g}
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the node: identity, site, stored blocks, disks",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			return runStatus(c.Context(), o, args)
		},
	}
	c.Flags().BoolVar(&o.json, "json", false, "print JSON")
	return c
}

func runStatus(ctx context.Context, o *statusOptions, args []string) error {
	cl, err := o.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	st, err := cl.Status(ctx)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(o.stdout, st)
	}
	tw := newTable(o.stdout)
	fmt.Fprintf(tw, "node:\t%s\n", st.ID)
	fmt.Fprintf(tw, "site:\t%s\n", st.Site)
	fmt.Fprintf(tw, "home:\t%s\n", st.Home)
	fmt.Fprintf(tw, "listen:\t%s\n", strings.Join(st.Listen, " "))
	fmt.Fprintf(tw, "daemon:\tpid %d, up since %s\n", st.PID, when(st.Started))
	fmt.Fprintf(tw, "nbd:\t%s\n", nbdLine(st))
	if st.ISCSI != "" {
		fmt.Fprintf(tw, "iscsi:\tiscsi://%s, %d sessions\n", st.ISCSI, st.ISCSISessions)
	}
	fmt.Fprintf(tw, "blocks:\t%d\n", st.Blocks)
	fmt.Fprintf(tw, "bytes:\t%s (%s on disk)\n", size.Format(st.Bytes), size.Format(st.DiskBytes))
	fmt.Fprintf(tw, "space:\t%s\n", spaceLine(st.Space))
	fmt.Fprintf(tw, "disks:\t%d\n", st.Disks)
	fmt.Fprintf(tw, "replicas:\t%d\n", st.Replicas)
	if st.PeerID != "" {
		alive := 0
		for _, m := range st.Members {
			if m.State == "alive" {
				alive++
			}
		}
		fmt.Fprintf(tw, "mesh:\t%d members (%d alive), %d blocks under-replicated\n", len(st.Members), alive, st.UnderReplicated)
		if h := st.Heal; h != nil {
			state := "idle"
			if h.Running {
				state = fmt.Sprintf("running, %d blocks to copy", h.Pending)
			}
			fmt.Fprintf(tw, "heal:\t%s; %d passes, copied %d blocks (%s), dropped %d surplus\n",
				state, h.Passes, h.CopiedBlocks, size.Format(h.CopiedBytes), h.DroppedBlocks)
			if h.LastError != "" {
				fmt.Fprintf(tw, "heal error:\t%s\n", h.LastError)
			}
		}
	}
	for _, m := range st.Mounts {
		fmt.Fprintf(tw, "mount:\t%s (since %s)\n", m.Dir, when(m.Started))
	}
	return tw.Flush()
}

// nbdLine describes the NBD listeners of a status.
func nbdLine(st api.Status) string {
	var parts []string
	if st.NBD != "" {
		a := "nbd://" + st.NBD
		if st.NBDTLS != "" {
			a += " (TLS " + st.NBDTLS + ")"
		}
		parts = append(parts, a)
	}
	if st.NBDSocket != "" {
		parts = append(parts, "nbd+unix:///DISK?socket="+st.NBDSocket)
	}
	if len(parts) == 0 {
		return "off"
	}
	return fmt.Sprintf("%s, %d connections", strings.Join(parts, " "), st.NBDConns)
}

// spaceLine describes the free space of a node's home: an operator must
// see at a glance that the device is full, and what that refuses.
func spaceLine(sp api.SpaceStatus) string {
	line := fmt.Sprintf("%s free, %s reserved for this node's disks", size.Format(sp.FreeBytes), size.Format(sp.ReserveBytes))
	switch sp.State {
	case api.SpaceFull:
		line += "; DEVICE FULL: commits fail; writes wait in the overlays and get \"no space left on device\" once it is nearly full"
	case api.SpaceLow:
		line += "; low: blocks from other nodes refused"
	}
	return line
}
