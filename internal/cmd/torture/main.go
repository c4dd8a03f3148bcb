// Command torture runs a mesh of real weft daemons, writes to its disks
// through NBD while a seeded nemesis kills, pauses, cuts off, slows, fills
// and corrupts its nodes and takes their disks over, then heals
// everything, reads every disk from every node, checks every slot against
// the write log and prints one line:
//
//	acknowledged writes: N, lost: L, corrupt reads: C, faults: F
//
//	torture -bin bin/weft [-duration 10m] [-seed N] [-dir DIR] [-keep]
//
// The exit status is 1 when L or C is not 0, a fenced replica is unreadable
// or a daemon exited on its own (a crash: it is restarted and the run goes
// on), 2 when the run itself broke (the line still counts what was read).
// See package internal/torture for the rules.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/weft-mesh/weft/internal/size"
	"github.com/weft-mesh/weft/internal/torture"
)

func main() {
	os.Exit(run())
}

func run() int {
	cfg := torture.DefaultConfig()
	flag.StringVar(&cfg.Bin, "bin", "bin/weft", "the weft binary the daemons run")
	flag.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long the writers and the nemesis run")
	seed := flag.Uint64("seed", 0, "the nemesis's and writers' seed (0: one from the clock, printed)")
	dir := flag.String("dir", "", "run directory (default: a new temporary directory)")
	keep := flag.Bool("keep", false, "keep the run directory (logs) after a run that found nothing")
	flag.IntVar(&cfg.Sites, "sites", cfg.Sites, "sites (failure domains), at least 3")
	flag.IntVar(&cfg.NodesPerSite, "nodes", cfg.NodesPerSite, "nodes per site")
	diskSize := flag.String("disk-size", "16M", "size of each disk")
	loopback := flag.Bool("loopback", false, "loopback addresses even as root (no cut, slow, fill)")
	flag.DurationVar(&cfg.HealLimit, "heal-limit", cfg.HealLimit, "how long the healed mesh may take to converge")
	flag.Parse()

	var err error
	if cfg.DiskSize, err = size.Parse(*diskSize); err != nil {
		fmt.Fprintf(os.Stderr, "torture: -disk-size: %v\n", err)
		return 2
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	cfg.Seed = *seed
	if cfg.Bin, err = filepath.Abs(cfg.Bin); err != nil {
		fmt.Fprintf(os.Stderr, "torture: %v\n", err)
		return 2
	}
	cfg.Dir = *dir
	if cfg.Dir == "" {
		if cfg.Dir, err = os.MkdirTemp("", "weft-torture-"); err != nil {
			fmt.Fprintf(os.Stderr, "torture: %v\n", err)
			return 2
		}
	}
	cfg.Namespaces = os.Geteuid() == 0 && !*loopback
	cfg.Progress = os.Stdout

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Printf("torture: seed %d, run directory %s\n", cfg.Seed, cfg.Dir)
	rep, err := torture.Run(ctx, cfg)
	for _, s := range rep.Skipped {
		fmt.Printf("skipped: %s\n", s)
	}
	for _, c := range rep.Crashes {
		fmt.Printf("crash: %s\n", c)
	}
	fmt.Println(rep.FaultLine())
	fmt.Println(rep.FencedLine())
	fmt.Println(rep.Line())
	switch {
	case err != nil:
		fmt.Fprintf(os.Stderr, "torture: the run broke (seed %d, logs in %s): %v\n", cfg.Seed, cfg.Dir, err)
		return 2
	case rep.Failed():
		fmt.Fprintf(os.Stderr, "torture: FAILED (seed %d, logs in %s)\n", cfg.Seed, cfg.Dir)
		return 1
	}
	if !*keep && *dir == "" {
		os.RemoveAll(cfg.Dir)
	}
	return 0
}
