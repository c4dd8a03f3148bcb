package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/node/csi"
)

type csiOptions struct {
	*globals
	endpoint string
	nodeID   string
	disksDir string
	logLevel string
}

func newCSICmd(g *globals) *cobra.Command {
	o := &csiOptions{globals: g}
	c := &cobra.Command{
		Use:   "csi --endpoint unix:///PATH [--node-id ID]",
		Short: "Serve a Container Storage Interface plugin (" + csi.PluginName + "): volumes are this node's disks",
		Long: `Serve a CSI plugin (identity, controller and node services) on a unix socket,
until Ctrl-C or SIGTERM, in front of the daemon of HOME:

  volume    a disk (its ID is its name); CreateVolume from a snapshot or a volume is an O(1) clone
  snapshot  a replica (its ID is DISK@REPLICA)
  block     a loop device on the disk's file, bind-mounted at the target path
  mount     ext4 (made on first use) on that loop device, staged and bind-mounted

StorageClass parameters: replicas (1-16), sync (true/false), block_size (bytes).
The node service asks the daemon to mount the node's disks (FUSE) at --disks-dir
and needs root; the identity and controller services do not.`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			return runCSI(c.Context(), o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.endpoint, "endpoint", os.Getenv("CSI_ENDPOINT"), "unix socket to serve on, unix:///PATH (default $CSI_ENDPOINT)")
	f.StringVar(&o.nodeID, "node-id", "", "node ID NodeGetInfo answers (default: the daemon's node ID)")
	f.StringVar(&o.disksDir, "disks-dir", "", "where the daemon mounts the node's disks for the node service (default HOME/csi/disks)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	return c
}

func runCSI(ctx context.Context, o *csiOptions) error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.logLevel)); err != nil {
		return usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", o.logLevel)}
	}
	if o.endpoint == "" {
		return usageError{"--endpoint unix:///PATH (or $CSI_ENDPOINT) is required"}
	}
	home, err := o.homeDir()
	if err != nil {
		return err
	}
	dir := filepath.Join(home, "csi", "disks") // its records go to HOME/csi/state
	if o.disksDir != "" {
		if dir, err = filepath.Abs(o.disksDir); err != nil {
			return usageError{fmt.Sprintf("--disks-dir: %v", err)}
		}
	}
	log := slog.New(slog.NewTextHandler(o.stderr, &slog.HandlerOptions{Level: lvl})).With("component", "csi")
	cl, err := o.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	p, err := csi.New(csi.Config{Volumes: cl, NodeID: o.nodeID, DisksDir: dir, Version: buildVersion(), Log: log})
	if err != nil {
		return err
	}
	l, err := csi.Listen(o.endpoint)
	if err != nil {
		return err
	}
	log.Info("serving CSI", "endpoint", o.endpoint, "disks_dir", dir)
	return p.Serve(ctx, l)
}

// buildVersion names the build of this binary: the module's version and
// the VCS revision go build stamped ("dev" when neither is known).
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, st := range bi.Settings {
		switch st.Key {
		case "vcs.revision":
			rev = st.Value
		case "vcs.modified":
			if st.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	switch {
	case rev != "" && (v == "" || v == "(devel)"):
		return rev + dirty
	case rev != "":
		return v + "+" + rev + dirty
	case v != "":
		return v
	}
	return "dev"
}
