package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/size"
	"github.com/weft-mesh/weft/node"
	"github.com/weft-mesh/weft/node/dockervol"
)

type daemonOptions struct {
	*globals
	logLevel   string
	cpuProfile string
	join       []string
	transferBW string
	reserve    string
	// docker: --docker-plugin and --docker-socket
	docker struct {
		plugin bool
		socket string
	}
	// peerBlockGrace overrides the config's; zero: not given.
	peerBlockGrace time.Duration
	heal           struct {
		bandwidth   string
		concurrency int
		interval    time.Duration
		// concurrencySet and intervalSet: the flags are on the command
		// line, override the config and must make sense (their zero
		// defaults mean "not given", never "zero").
		concurrencySet, intervalSet bool
	}
	// detector overrides the config's failure-detector timing; zero: not given.
	detector struct {
		probeInterval time.Duration
		suspicionMult int
	}
}

func newDaemonCmd(g *globals) *cobra.Command {
	o := &daemonOptions{globals: g}
	c := &cobra.Command{
		Use:   "daemon",
		Short: "Run the node: owns the store, serves the CLI on HOME/weft.sock",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			o.heal.concurrencySet = c.Flags().Changed("heal-concurrency")
			o.heal.intervalSet = c.Flags().Changed("heal-interval")
			return runDaemon(c.Context(), o, args)
		},
	}
	c.Flags().StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	c.Flags().StringVar(&o.cpuProfile, "cpu-profile", "", "write a Go CPU profile of the whole run to this file (for go tool pprof)")
	c.Flags().StringVar(&o.transferBW, "transfer-bandwidth", "", "the node's budget for the transfers it receives, shared by priority, e.g. 100M (default: the config's, else none)")
	c.Flags().StringVar(&o.reserve, "reserve", "", "free space blocks stored for other nodes (heal, pushes) must leave, kept for this node's own disks, e.g. 1G (default: the config's, else 256M; at least 64M)")
	c.Flags().DurationVar(&o.peerBlockGrace, "peer-block-grace", 0, "how long gc keeps blocks pushed to this node that no root it knows reaches yet (default: the config's, else 10m); keep it above the longest partition you expect")
	c.Flags().BoolVar(&o.docker.plugin, "docker-plugin", false, "also serve Docker's volume plugin protocol: runs weft docker-plugin as a child process, restarted if it dies (default: the config's docker_plugin)")
	c.Flags().StringVar(&o.docker.socket, "docker-socket", "", "the plugin's socket (default: the config's docker_socket, else "+dockervol.DefaultSocket+")")
	c.Flags().StringArrayVar(&o.join, "join", nil, "join the mesh through this member's multiaddr (.../p2p/<peer id>; repeatable)")
	c.Flags().StringVar(&o.heal.bandwidth, "heal-bandwidth", "", "cap the bytes per second self-heal copies to this node, e.g. 100M (default: the config's, else no cap)")
	c.Flags().IntVar(&o.heal.concurrency, "heal-concurrency", 0, "self-heal fetches in flight (default 4)")
	c.Flags().DurationVar(&o.heal.interval, "heal-interval", 0, "time between heal passes when nothing triggers one (default 30s)")
	c.Flags().DurationVar(&o.detector.probeInterval, "probe-interval", 0, "failure detector: time between probes of members (default: the config's, else 500ms)")
	c.Flags().IntVar(&o.detector.suspicionMult, "suspicion-mult", 0, "failure detector: probe intervals a suspected member has to refute before it is declared dead (default: the config's, else 4)")
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
	cfg.Join = o.join
	if o.heal.bandwidth != "" {
		if cfg.HealBandwidth, err = size.Parse(o.heal.bandwidth); err != nil {
			return usageError{fmt.Sprintf("--heal-bandwidth: %v", err)}
		}
	}
	if o.transferBW != "" {
		if cfg.TransferBandwidth, err = size.Parse(o.transferBW); err != nil {
			return usageError{fmt.Sprintf("--transfer-bandwidth: %v", err)}
		}
	}
	if o.reserve != "" {
		if cfg.ReserveBytes, err = size.Parse(o.reserve); err != nil {
			return usageError{fmt.Sprintf("--reserve: %v", err)}
		}
		if cfg.ReserveBytes < node.MinReserve {
			return usageError{fmt.Sprintf("--reserve %s: must be at least %s (the block store's own floor)", o.reserve, size.Format(node.MinReserve))}
		}
	}
	if c := o.peerBlockGrace; c != 0 {
		if c < 0 {
			return usageError{fmt.Sprintf("--peer-block-grace %v: must be positive", c)}
		}
		cfg.PeerBlockGrace = c
	}
	if o.heal.concurrencySet {
		if o.heal.concurrency < 1 {
			return usageError{fmt.Sprintf("--heal-concurrency %d: must be at least 1", o.heal.concurrency)}
		}
		cfg.HealConcurrency = o.heal.concurrency
	}
	if o.heal.intervalSet {
		if o.heal.interval <= 0 {
			return usageError{fmt.Sprintf("--heal-interval %v: must be positive", o.heal.interval)}
		}
		cfg.HealInterval = o.heal.interval
	}
	if o.detector.probeInterval != 0 {
		cfg.ProbeInterval = o.detector.probeInterval
	}
	if o.detector.suspicionMult != 0 {
		cfg.SuspicionMult = o.detector.suspicionMult
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err.Error()}
	}
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
	if o.docker.plugin {
		cfg.DockerPlugin = true
	}
	if o.docker.socket != "" {
		cfg.DockerSocket = o.docker.socket
	}
	if cfg.DockerPlugin {
		stop, err := superviseDockerPlugin(ctx, home, cfg.DockerSocket, o.stderr, cfg.Logger.With("component", "docker-plugin-supervisor"))
		if err != nil {
			return err
		}
		defer stop()
	}
	return node.Run(ctx, cfg)
}
