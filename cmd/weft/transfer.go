package main

import (
	"context"
	"fmt"
	"github.com/weft-mesh/weft/api"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/datapath"
	"github.com/weft-mesh/weft/internal/size"
)

// transferFlags are the knobs shared by push and pull.
type transferFlags struct {
	priority    string
	bwlimit     string
	blockSize   string
	concurrency int
	// hasConcurrency: add registered --concurrency (replicate has none, and
	// leaves concurrency at 0, the default).
	hasConcurrency bool
	detach         bool
	json           bool
}

func (f *transferFlags) add(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&f.priority, "priority", "normal", "very-low, low, normal, high or very-high: the share of a shared link")
	fl.StringVar(&f.bwlimit, "bwlimit", "", "bytes per second on the wire, e.g. 50M (default: no limit)")
	fl.StringVar(&f.blockSize, "block-size", "", "transfer unit: bytes per request, 64K to 16M (default 4M; large for fat links, small for slow ones)")
	fl.IntVar(&f.concurrency, "concurrency", datapath.DefaultConcurrency, "requests in flight per receiver")
	f.hasConcurrency = true
	fl.BoolVar(&f.detach, "detach", false, "start the transfer and return its id")
	fl.BoolVar(&f.json, "json", false, "wait, then print the transfer as JSON")
}

func (f *transferFlags) options() (api.TransferOptions, error) {
	o := api.TransferOptions{Priority: f.priority, Concurrency: f.concurrency}
	if f.hasConcurrency {
		if err := flagRange("concurrency", f.concurrency, 1, datapath.MaxConcurrency); err != nil {
			return o, err
		}
	}
	var err error
	if f.bwlimit != "" {
		if o.BWLimit, err = size.Parse(f.bwlimit); err != nil {
			return o, usageError{fmt.Sprintf("--bwlimit: %v", err)}
		}
	}
	if f.blockSize != "" {
		if o.BlockSize, err = size.Parse(f.blockSize); err != nil {
			return o, usageError{fmt.Sprintf("--block-size: %v", err)}
		}
	}
	return o, nil
}

func newPushCmd(g *globals) *cobra.Command {
	f := &transferFlags{}
	var to string
	c := &cobra.Command{
		Use:   "push SOURCE --to TARGET[,TARGET...]",
		Short: "Send a disk, DISK@REPLICA or NAME@N to sites, peers or multiaddrs, only the blocks they lack",
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if to == "" {
				return usageError{"push: --to TARGET is required"}
			}
			o, err := f.options()
			if err != nil {
				return err
			}
			return runTransfer(c.Context(), g, f, api.TransferRequest{Source: args[0], Targets: strings.Split(to, ","), Options: o})
		},
	}
	c.Flags().StringVar(&to, "to", "", "targets: site names, peer IDs or multiaddrs, comma-separated")
	f.add(c)
	return c
}

func newPullCmd(g *globals) *cobra.Command {
	f := &transferFlags{}
	var from string
	c := &cobra.Command{
		Use:   "pull SOURCE --from PEER|SITE",
		Short: "Fetch a disk, DISK@REPLICA or NAME@N to this node, only the blocks it lacks",
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if from == "" {
				return usageError{"pull: --from PEER|SITE is required"}
			}
			o, err := f.options()
			if err != nil {
				return err
			}
			return runTransfer(c.Context(), g, f, api.TransferRequest{Source: args[0], From: from, Options: o})
		},
	}
	c.Flags().StringVar(&from, "from", "", "a peer ID, a multiaddr, or a site (every live member of it serves)")
	f.add(c)
	return c
}

// runTransfer starts a transfer and, unless detached, follows it to the end
// with a line per target; Ctrl-C cancels it.
func runTransfer(ctx context.Context, g *globals, f *transferFlags, req api.TransferRequest) error {
	cl, err := g.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	t, err := cl.StartTransfer(ctx, req)
	if err != nil {
		return err
	}
	if f.detach {
		fmt.Fprintln(g.stdout, t.ID)
		return nil
	}
	lines := 0
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for t.State == "running" {
		select {
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			t, err = cl.CancelTransfer(cctx, t.ID)
			cancel()
			if err != nil {
				return err
			}
			return fmt.Errorf("transfer %s cancelled", t.ID)
		case <-tick.C:
		}
		if t, err = cl.Transfer(ctx, t.ID); err != nil {
			return err
		}
		if g.progress {
			lines = drawTransfer(g, t, lines)
		}
	}
	if f.json {
		return printJSON(g.stdout, t)
	}
	fmt.Fprintf(g.stdout, "transfer %s %s: %s\n", t.ID, t.State, transferLine(t.BytesSent, t.BlocksSent, t.TotalBytes, t.Rate, 0))
	for _, tp := range t.Targets {
		fmt.Fprintf(g.stdout, "  %s (%s): %s, %s\n", tp.Target, shortPeer(tp.Peer), tp.State,
			transferLine(tp.Bytes, tp.Blocks, tp.Total, tp.Rate, 0))
	}
	if t.State != "done" {
		return fmt.Errorf("transfer %s %s: %s", t.ID, t.State, t.Error)
	}
	return nil
}

// drawTransfer redraws the progress lines of t on the terminal, over the
// previous lines lines.
func drawTransfer(g *globals, t api.TransferInfo, lines int) int {
	if lines > 0 {
		fmt.Fprintf(g.stderr, "\x1b[%dA", lines)
	}
	rows := []string{fmt.Sprintf("%s %s: %s", t.Kind, t.Source, transferLine(t.BytesSent, t.BlocksSent, t.TotalBytes, t.Rate, t.ETA))}
	for _, tp := range t.Targets {
		rows = append(rows, fmt.Sprintf("  -> %-20s %s", tp.Target, transferLine(tp.Bytes, tp.Blocks, tp.Total, tp.Rate, tp.ETA)))
	}
	for _, r := range rows {
		fmt.Fprintf(g.stderr, "\x1b[2K%s\n", r)
	}
	return len(rows)
}

func transferLine(bytes, blocks, total int64, rate, eta float64) string {
	s := fmt.Sprintf("%s of %s, %d blocks, %s/s", size.Format(bytes), size.Format(total), blocks, size.Format(int64(rate)))
	if total > 0 {
		const width = 24
		done := int(min(bytes, total) * width / total)
		s = "[" + strings.Repeat("=", done) + strings.Repeat(" ", width-done) + "] " + s
	}
	if eta > 0 {
		s += fmt.Sprintf(", ETA %s", (time.Duration(eta) * time.Second).Round(time.Second))
	}
	return s
}

func shortPeer(id string) string {
	if len(id) > 8 {
		return "…" + id[len(id)-8:]
	}
	return id
}

func newTransfersCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "transfers",
		Short: "List running and recent transfers with their progress",
	}
	return listCmd(g, c, (*api.Client).Transfers, listing[api.TransferInfo]{
		empty:  "no transfers",
		header: []string{"ID", "KIND", "SOURCE", "STATE", "PRIORITY", "PROGRESS", "STARTED"},
		row: func(t api.TransferInfo) []string {
			return []string{t.ID, t.Kind, t.Source, t.State, t.Priority,
				transferLine(t.BytesSent, t.BlocksSent, t.TotalBytes, t.Rate, t.ETA), when(t.Started)}
		},
	})
}

func newTransferCmd(g *globals) *cobra.Command {
	c := groupCmd("transfer", "Act on one transfer")
	c.AddCommand(&cobra.Command{
		Use:   "cancel ID",
		Short: "Stop a transfer (a later push or pull resumes from what arrived)",
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			defer cl.Close()
			t, err := cl.CancelTransfer(c.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "transfer %s %s\n", t.ID, t.State)
			return nil
		},
	})
	return c
}

// showPullProgress draws, on a terminal, the progress of the pull a
// command started on the daemon (its source starts with prefix) until the
// returned stop is called.
func showPullProgress(ctx context.Context, g *globals, cl *api.Client, prefix string) (stop func()) {
	if !g.progress {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		lines := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			list, err := cl.Transfers(ctx)
			if err != nil {
				continue
			}
			for _, t := range list {
				if t.Kind == "pull" && t.State == "running" && strings.HasPrefix(t.Source, prefix) {
					lines = drawTransfer(g, t, lines)
					break
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}
