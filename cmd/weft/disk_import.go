package main

import (
	"context"
	"fmt"
	"github.com/weft-mesh/weft/api"
	"os"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/size"
)

type diskImportOptions struct {
	*globals
	blockSize string
	replicas  int
}

func newDiskImportCmd(g *globals) *cobra.Command {
	o := &diskImportOptions{globals: g}
	c := &cobra.Command{
		Use:   "import NAME FILE|-",
		Short: "Copy a raw image into a disk (created if absent, sized to the input)",
		Long: "Copy a raw image (or stdin with -) into a disk. A disk that does not exist is\n" +
			"created, sized to the input rounded up to the block size. An existing disk's\n" +
			"content is replaced (the rest of the disk reads as zeros); the input must fit.",
		Args: exactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			return runDiskImport(c.Context(), o, args)
		},
	}
	f := c.Flags()
	f.StringVar(&o.blockSize, "block-size", "", "block size of a new disk (default 64K)")
	f.IntVar(&o.replicas, "replicas", api.DefaultReplicas, "replication factor of a new disk")
	return c
}

func runDiskImport(ctx context.Context, o *diskImportOptions, args []string) error {
	name, path := args[0], args[1]
	bs, err := parseBlockSize(o.blockSize)
	if err != nil {
		return err
	}
	if err := flagRange("replicas", o.replicas, 1, api.MaxReplicas); err != nil {
		return err
	}
	in, total := o.stdin, int64(-1)
	var regular *os.File // read by the daemon itself
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		if fi.IsDir() {
			return fmt.Errorf("import: %s is a directory", path)
		}
		in = f
		if fi.Mode().IsRegular() {
			regular, total = f, fi.Size()
		}
	}
	cl, err := o.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	spec := api.DiskSpec{Name: name, BlockSize: bs, Replicas: o.replicas}
	bar := newProgress(o.globals, "import "+name, total)
	var info api.DiskInfo
	if regular != nil {
		// The daemon reads the file itself through the descriptor passed
		// to it, which saves copying every byte through the socket.
		info, err = cl.ImportFile(ctx, spec, regular, bar.setOf)
	} else {
		info, err = cl.Import(ctx, spec, &progressReader{r: in, p: bar}, -1)
	}
	bar.done()
	if err != nil {
		return err
	}
	fmt.Fprintf(o.stdout, "imported %s into disk %s: size %s, used %s\n",
		path, info.Name, size.Format(info.Size), size.Format(info.UsedBytes))
	return nil
}
