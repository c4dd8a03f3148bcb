package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
)

// requestTimeout bounds the mount and unmount requests of a foreground
// `weft mount`, which go on after a signal.
const requestTimeout = 30 * time.Second

type mountOptions struct {
	*globals
	detach bool
}

func newMountCmd(g *globals) *cobra.Command {
	o := &mountOptions{globals: g}
	c := &cobra.Command{
		Use:   "mount [-d] DIR",
		Short: "Mount the node's disks as files under DIR (FUSE), until Ctrl-C",
		Long: `Mount the node's disks as files under DIR, an existing directory:

  DIR/<disk>.img                       a disk this node owns: read-write (losetup, mkfs, qemu-img, dd)
  DIR/<disk>.img                       a disk another node owns: read-only, at its last commit
  DIR/replicas/<disk>/<replica>.img    every replica: read-only
  DIR/spacesuits/<name>@<version>.img  every spacesuit version: read-only

Disks created, cloned or removed while mounted appear and vanish; nothing is
removed through the mount (rm fails: EPERM for a disk, which weft disk rm
removes, EROFS for the rest). fsync on a disk file makes its writes durable
like an NBD FLUSH. The daemon serves the mount; weft mount stays in the
foreground and unmounts on Ctrl-C or SIGTERM, or with -d returns at once
(unmount later with weft umount DIR).`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runMount(c.Context(), o, args)
		},
	}
	c.Flags().BoolVarP(&o.detach, "detach", "d", false, "return once mounted; unmount with weft umount DIR")
	return c
}

func runMount(ctx context.Context, o *mountOptions, args []string) error {
	dir, err := filepath.Abs(args[0])
	if err != nil {
		return fmt.Errorf("mount point %s: %w", args[0], err)
	}
	cl, err := o.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	// A signal during the request must not leave a mount nobody waits
	// on: finish the request, then unmount below.
	mctx, mcancel := context.WithTimeout(context.WithoutCancel(ctx), requestTimeout)
	defer mcancel()
	m, err := cl.Mount(mctx, dir)
	if err != nil {
		return err
	}
	if o.detach {
		fmt.Fprintf(o.stdout, "mounted %s (unmount with: weft umount %s)\n", m.Dir, m.Dir)
		return nil
	}
	fmt.Fprintf(o.stdout, "mounted %s; Ctrl-C unmounts\n", m.Dir)
	waitErr := make(chan error, 1)
	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { waitErr <- cl.WaitMount(wctx, m.Dir) }()
	select {
	case err := <-waitErr:
		if err != nil {
			return fmt.Errorf("mount %s: lost the daemon: %w", m.Dir, err)
		}
		fmt.Fprintf(o.stdout, "%s was unmounted\n", m.Dir)
		return nil
	case <-ctx.Done():
	}
	uctx, ucancel := context.WithTimeout(context.Background(), requestTimeout)
	defer ucancel()
	if err := cl.Unmount(uctx, m.Dir, false); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("unmount %s: no answer within %v", m.Dir, requestTimeout)
		}
		return fmt.Errorf("%w (it stays mounted: weft umount [--lazy] %s)", err, m.Dir)
	}
	fmt.Fprintf(o.stdout, "unmounted %s\n", m.Dir)
	return nil
}
