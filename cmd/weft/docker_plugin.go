package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/size"
	"github.com/weft-mesh/weft/node/blockfs"
	"github.com/weft-mesh/weft/node/dockervol"
)

type dockerPluginOptions struct {
	*globals
	socket      string
	dir         string
	defaultSize string
	logLevel    string
}

func newDockerPluginCmd(g *globals) *cobra.Command {
	o := &dockerPluginOptions{globals: g}
	c := &cobra.Command{
		Use:   "docker-plugin [--socket PATH] [--dir DIR]",
		Short: "Serve Docker's volume plugin protocol (driver weft): volumes are this node's disks (root)",
		Long: `Serve Docker's volume plugin protocol on a unix socket, until Ctrl-C or SIGTERM:
docker volume create -d weft [--opt size=10G] [--opt replicas=2] [--opt from=NAME@N] VOL
makes a weft disk (from= an O(1) clone of a spacesuit version, a replica or a disk),
docker run -v VOL:/data mounts it (FUSE file, loop device, ext4 made on first use),
docker volume ls/inspect/rm list, describe and remove disks.

It runs apart from the daemon (which it reaches on HOME/weft.sock) so that it can
restart without unmounting a volume a container uses: mounts are the kernel's, and
who uses them is kept in DIR/mounts.json. Needs root.`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			return runDockerPlugin(c.Context(), o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.socket, "socket", dockervol.DefaultSocket, "unix socket dockerd finds the plugin on (the plugin name is the file's name without .sock)")
	f.StringVar(&o.dir, "dir", "", "the plugin's directory: FUSE mount, volume mounts, mount references (default HOME/docker)")
	f.StringVar(&o.defaultSize, "default-size", "10G", "size of a volume created without --opt size (thin)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	return c
}

func runDockerPlugin(ctx context.Context, o *dockerPluginOptions) error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.logLevel)); err != nil {
		return usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", o.logLevel)}
	}
	home, err := o.homeDir()
	if err != nil {
		return err
	}
	cfg := dockervol.DefaultConfig()
	cfg.Dir = filepath.Join(home, "docker")
	if o.dir != "" {
		if cfg.Dir, err = filepath.Abs(o.dir); err != nil {
			return usageError{fmt.Sprintf("--dir: %v", err)}
		}
	}
	if cfg.DefaultSize, err = size.Parse(o.defaultSize); err != nil {
		return usageError{fmt.Sprintf("--default-size: %v", err)}
	}
	cfg.Logger = slog.New(slog.NewTextHandler(o.stderr, &slog.HandlerOptions{Level: lvl})).With("component", "docker-plugin")
	cl, err := o.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	p, err := dockervol.New(cfg, cl, blockfs.Attacher{})
	if err != nil {
		return err
	}
	if err := p.Recover(ctx); err != nil {
		return err
	}
	cfg.Logger.Info("serving Docker volumes", "socket", o.socket, "dir", cfg.Dir)
	return dockervol.Serve(ctx, o.socket, dockervol.NewHandler(p, cfg.Logger))
}
