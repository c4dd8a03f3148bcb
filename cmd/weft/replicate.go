package main

import (
	"fmt"
	"github.com/weft-mesh/weft/api"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/size"
)

func newReplicateCmd(g *globals) *cobra.Command {
	f := &transferFlags{}
	var to string
	var every time.Duration
	var pull bool
	var keep int
	c := &cobra.Command{
		Use:   "replicate DISK (--to SITE[,SITE...] | --pull) [--every 5m] [--keep 3] [--priority P] [--bwlimit RATE] [--block-size SIZE]",
		Short: "Replicate a disk to a site on a schedule: a replica and the blocks the site lacks, when the disk changed",
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if to == "" && !pull {
				return usageError{"replicate: --to SITE is required (or --pull, on a node of the site)"}
			}
			if every < api.MinReplicateEvery {
				return usageError{fmt.Sprintf("replicate: --every %v: check the disk at most every %v", every, api.MinReplicateEvery)}
			}
			if keep < 1 {
				return usageError{fmt.Sprintf("replicate: --keep %d: keep at least 1 replicated state", keep)}
			}
			o, err := f.options()
			if err != nil {
				return err
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			defer cl.Close()
			// One policy per site: each keeps its own states, lag and
			// errors; the owner pushes the disk to all of them at once.
			sites := []string{""}
			if to != "" {
				if sites, err = siteList(to); err != nil {
					return err
				}
			}
			for k, site := range sites {
				p, err := cl.Replicate(c.Context(), api.ReplicateRequest{Disk: args[0], Site: site, Pull: pull, Every: every, Keep: keep, Options: o})
				if err != nil && k > 0 {
					// The sites before this one have their policies.
					return fmt.Errorf("%s: %w (added: %s; not tried: %s)", site, err, strings.Join(sites[:k], ","), orDash(strings.Join(sites[k+1:], ",")))
				}
				if err != nil {
					return err
				}
				verb := "replicating"
				if p.Mode == api.ModePull {
					verb = "pulling"
				}
				fmt.Fprintf(g.stdout, "%s %s to %s every %s, keeping the last %d states\n", verb, p.Disk, p.Site, p.Every, p.Keep)
			}
			return nil
		},
	}
	c.Flags().StringVar(&to, "to", "", "the sites to keep a copy at, comma-separated (the disk's owner pushes to all of them at once, a swarm)")
	c.Flags().BoolVar(&pull, "pull", false, "run on a node of the archive site: it pulls the disk on the schedule (pull-based backup)")
	c.Flags().DurationVar(&every, "every", 5*time.Minute, "how often to check the disk for changes")
	c.Flags().IntVar(&keep, "keep", 3, "how many replicated states (repl-SITE-* replicas) to keep, on the owner and at the site")
	fl := c.Flags()
	fl.StringVar(&f.priority, "priority", "normal", "very-low, low, normal, high or very-high")
	fl.StringVar(&f.bwlimit, "bwlimit", "", "bytes per second on the wire, e.g. 50M")
	fl.StringVar(&f.blockSize, "block-size", "", "transfer unit, 64K to 16M (default 4M)")
	c.AddCommand(newReplicateLsCmd(g), newReplicateRmCmd(g))
	return c
}

func newReplicateLsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "ls",
		Short: "List replication policies: last success, lag and bytes",
	}
	return listCmd(g, c, (*api.Client).Policies, listing[api.Policy]{
		empty:  "no replication policies (add one with: weft replicate DISK --to SITE)",
		header: []string{"DISK", "MODE", "SITE", "EVERY", "KEEP", "STATUS", "LAST SUCCESS", "LAG", "LAST BYTES", "TOTAL", "CYCLES", "ERROR"},
		row: func(p api.Policy) []string {
			return []string{p.Disk, p.Mode, p.Site, p.Every.String(), strconv.Itoa(p.Keep), policyStatus(p), when(p.LastSuccess),
				policyLag(p), size.Format(p.LastBytes), size.Format(p.TotalBytes), strconv.FormatInt(p.Cycles, 10), orDash(p.LastError)}
		},
	})
}

// policyStatus is how replicate ls shows a policy's status.
func policyStatus(p api.Policy) string {
	if p.Status == api.PolicyDiskGone {
		return "disk gone"
	}
	return p.Status
}

// policyLag is how replicate ls shows a policy's lag: never when the site
// holds nothing from it yet, - when the disk is gone.
func policyLag(p api.Policy) string {
	switch {
	case p.Lag != nil:
		return (time.Duration(*p.Lag) * time.Second).Round(time.Second).String()
	case p.LastSuccess.IsZero():
		return "never"
	}
	return "-"
}

func newReplicateRmCmd(g *globals) *cobra.Command {
	var to, mode string
	c := &cobra.Command{
		Use:   "rm DISK --to SITE [--mode push|pull]",
		Short: "Stop replicating a disk to a site (the replicated states stay, here and at the site)",
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if to == "" {
				return usageError{"replicate rm: --to SITE is required"}
			}
			if mode != "" && mode != api.ModePush && mode != api.ModePull {
				return usageError{fmt.Sprintf("replicate rm: --mode %q: want %s or %s", mode, api.ModePush, api.ModePull)}
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			defer cl.Close()
			res, err := cl.RemovePolicy(c.Context(), args[0], to, mode)
			if err != nil {
				return err
			}
			p := res.Policy
			fmt.Fprintf(g.stdout, "removed %s policy %s → %s", p.Mode, p.Disk, p.Site)
			if len(res.Kept) == 0 {
				fmt.Fprintln(g.stdout, "; it kept no replicated states")
				return nil
			}
			where := "on the owner and at " + p.Site
			if p.Mode == api.ModePull {
				where = "on the pulling node at " + p.Site
			}
			states := "states"
			if len(res.Kept) == 1 {
				states = "state"
			}
			fmt.Fprintf(g.stdout, "; kept %d replicated %s %s: %s; remove them with: weft replica rm %s NAME\n",
				len(res.Kept), states, where, strings.Join(res.Kept, ", "), p.Disk)
			return nil
		},
	}
	c.Flags().StringVar(&to, "to", "", "the site")
	c.Flags().StringVar(&mode, "mode", "", "push or pull: which policy, when the disk has both to the site")
	return c
}

func newRecoverCmd(g *globals) *cobra.Command {
	var from string
	c := &cobra.Command{
		Use:   "recover DISK --from SITE",
		Short: "Bring a disk back to its last state replicated to a site (the current head is kept as a replica)",
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if from == "" {
				return usageError{"recover: --from SITE is required"}
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			defer cl.Close()
			stop := showPullProgress(c.Context(), g, cl, args[0]+"@")
			d, err := cl.Recover(c.Context(), args[0], from)
			stop()
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "disk %s recovered from %s (root %s)\n", d.Name, from, d.Root)
			return nil
		},
	}
	c.Flags().StringVar(&from, "from", "", "the site the disk was replicated to")
	return c
}

// siteList parses --to's comma-separated sites: no empty entries, each
// once.
func siteList(to string) ([]string, error) {
	var sites []string
	for _, site := range strings.Split(to, ",") {
		site = strings.TrimSpace(site)
		if site == "" {
			return nil, usageError{fmt.Sprintf("replicate: --to %q: an empty site name", to)}
		}
		if slices.Contains(sites, site) {
			return nil, usageError{fmt.Sprintf("replicate: --to %q: site %s named twice", to, site)}
		}
		sites = append(sites, site)
	}
	return sites, nil
}
