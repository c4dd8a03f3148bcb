package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/weft-mesh/weft/api"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
)

// globals are the options every command shares.
type globals struct {
	home     string
	stdin    io.Reader
	stdout   io.Writer
	stderr   io.Writer
	progress bool // stderr is a terminal: show progress bars
	// wait is how long a command waits for a daemon that does not answer
	// yet (one just started in the background) before it gives up.
	wait time.Duration
}

// usageError is a command line the CLI cannot make sense of (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// defaultHome is $WEFT_HOME, else ~/.weft.
func defaultHome() string {
	if h := os.Getenv("WEFT_HOME"); h != "" {
		return h
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".weft")
	}
	return ""
}

// homeDir returns the home as an absolute path.
func (g *globals) homeDir() (string, error) {
	if g.home == "" {
		return "", errors.New("no home directory: set --home or $WEFT_HOME")
	}
	abs, err := filepath.Abs(g.home)
	if err != nil {
		return "", fmt.Errorf("home %s: %w", g.home, err)
	}
	return abs, nil
}

// daemonPoll is how often a command given --wait asks again for the daemon.
const daemonPoll = 100 * time.Millisecond

// client returns a client for the daemon of the home; with --wait, once
// the daemon answers.
func (g *globals) client() (*api.Client, error) {
	home, err := g.homeDir()
	if err != nil {
		return nil, err
	}
	cl := api.NewClient(home)
	if g.wait <= 0 {
		return cl, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.wait)
	defer cancel()
	tick := time.NewTicker(daemonPoll)
	defer tick.Stop()
	for {
		_, err := cl.Status(ctx)
		if !errors.Is(err, api.ErrNoDaemon) {
			return cl, nil // answered, or will fail the command with its own error
		}
		select {
		case <-ctx.Done():
			cl.Close()
			return nil, fmt.Errorf("%w (waited %v)", err, g.wait)
		case <-tick.C:
		}
	}
}

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "weft",
		Short:         "weft: a peer-to-peer storage mesh for VM disks",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          unknownCommand,
		RunE: func(c *cobra.Command, args []string) error {
			return c.Help()
		},
	}
	root.PersistentFlags().StringVar(&g.home, "home", defaultHome(), "node home directory ($WEFT_HOME, else ~/.weft)")
	root.PersistentFlags().DurationVar(&g.wait, "wait", 0, "wait up to this long for the daemon to answer (one just started with weft daemon &)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Sprintf("%v (see: %s --help)", err, c.CommandPath())}
	})
	root.AddCommand(
		newInitCmd(g),
		newDaemonCmd(g),
		newDiskCmd(g),
		newReplicaCmd(g),
		newGCCmd(g),
		newScrubCmd(g),
		newStatusCmd(g),
		newIDCmd(g), newTokenCmd(g), newJoinCmd(g), newPeersCmd(g),
		newSpacesuitCmd(g),
		newPushCmd(g), newPullCmd(g), newTransfersCmd(g), newTransferCmd(g),
		newReplicateCmd(g), newRecoverCmd(g),
		newMountCmd(g), newUmountCmd(g),
		newDockerPluginCmd(g),
		newCSICmd(g),
	)
	return root
}

// exactArgs is cobra.ExactArgs with a usage error that shows the command
// line.
func exactArgs(n int) cobra.PositionalArgs {
	return rangeArgs(n, n)
}

// rangeArgs accepts min to max positional arguments.
func rangeArgs(min, max int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < min || len(args) > max {
			return usageError{fmt.Sprintf("usage: %s", c.UseLine())}
		}
		return nil
	}
}

// flagRange refuses a value of an integer flag outside [lo, hi]: a value
// that makes no sense is an error, never replaced by a default.
func flagRange(name string, v, lo, hi int) error {
	if v < lo || v > hi {
		return usageError{fmt.Sprintf("--%s %d: must be %d to %d", name, v, lo, hi)}
	}
	return nil
}

// unknownCommand refuses arguments to a command that only holds
// subcommands: they are a mistyped subcommand, a usage error.
func unknownCommand(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Sprintf("unknown command %q for %q (see: %s --help)", args[0], c.CommandPath(), c.CommandPath())}
	}
	return nil
}

// groupCmd is a command that only holds subcommands.
func groupCmd(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  unknownCommand,
		RunE: func(c *cobra.Command, args []string) error {
			return usageError{fmt.Sprintf("usage: %s COMMAND (see: %s --help)", c.CommandPath(), c.CommandPath())}
		},
	}
}
