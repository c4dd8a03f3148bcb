package main

import (
	"context"
	"fmt"
	"github.com/weft-mesh/weft/api"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/size"
)

type diskCreateOptions struct {
	*globals
	size      string
	blockSize string
	replicas  int
	sync      bool
}

func newDiskCreateCmd(g *globals) *cobra.Command {
	o := &diskCreateOptions{globals: g}
	c := &cobra.Command{
		Use:   "create NAME --size SIZE [--block-size SIZE] [--replicas N] [--sync]",
		Short: "Create an empty thin disk",
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runDiskCreate(c.Context(), o, args)
		},
	}
	f := c.Flags()
	f.StringVar(&o.size, "size", "", "disk size, e.g. 32M, 10G, 1T (binary units)")
	f.StringVar(&o.blockSize, "block-size", "", "block size, a power of two from 4K to 4M (default 64K)")
	f.IntVar(&o.replicas, "replicas", api.DefaultReplicas, "copies of each block in the mesh")
	f.BoolVar(&o.sync, "sync", false, "a flush returns only when every copy is on its node (default: async, replicated behind)")
	return c
}

func runDiskCreate(ctx context.Context, o *diskCreateOptions, args []string) error {
	if o.size == "" {
		return usageError{"disk create: --size is required (e.g. --size 10G)"}
	}
	n, err := size.Parse(o.size)
	if err != nil {
		return usageError{fmt.Sprintf("--size: %v", err)}
	}
	bs, err := parseBlockSize(o.blockSize)
	if err != nil {
		return err
	}
	if err := flagRange("replicas", o.replicas, 1, api.MaxReplicas); err != nil {
		return err
	}
	cl, err := o.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	info, err := cl.CreateDisk(ctx, api.DiskSpec{Name: args[0], Size: n, BlockSize: bs, Replicas: o.replicas, Sync: o.sync})
	if err != nil {
		return err
	}
	mode := "async"
	if info.Sync {
		mode = "sync"
	}
	fmt.Fprintf(o.stdout, "created disk %s: %s, block size %s, %d replicas (%s)\n",
		info.Name, size.Format(info.Size), size.Format(info.BlockSize), info.Replicas, mode)
	return nil
}

// parseBlockSize parses an optional --block-size; "" means the default (0).
func parseBlockSize(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := size.Parse(s)
	if err != nil {
		return 0, usageError{fmt.Sprintf("--block-size: %v", err)}
	}
	return n, nil
}
