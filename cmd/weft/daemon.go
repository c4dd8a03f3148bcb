package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/node"
)

type daemonOptions struct {
	*globals
	logLevel   string
	cpuProfile string
}

func newDaemonCmd(g *globals) *cobra.Command {
	o := &daemonOptions{globals: g}
	c := &cobra.Command{
		Use:   "daemon",
		Short: "Run the node: owns the store, serves the CLI on HOME/weft.sock",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			return runDaemon(c.Context(), o, args)
		},
	}
	c.Flags().StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	c.Flags().StringVar(&o.cpuProfile, "cpu-profile", "", "write a Go CPU profile of the whole run to this file (for go tool pprof)")
	return c
}

// runDaemon runs the node until ctx is cancelled (SIGINT or SIGTERM).
func runDaemon(ctx context.Context, o *daemonOptions, args []string) error {
	home, err := o.homeDir()
	if err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.logLevel)); err != nil {
		return usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", o.logLevel)}
	}
	cfg, err := node.Load(home)
	if err != nil {
		return err
	}
	cfg.Logger = slog.New(slog.NewTextHandler(o.stderr, &slog.HandlerOptions{Level: lvl}))
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	return node.Run(ctx, cfg)
}
