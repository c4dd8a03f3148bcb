package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/size"
	"github.com/weft-mesh/weft/volume"
)

type diskExportOptions struct {
	*globals
}

func newDiskExportCmd(g *globals) *cobra.Command {
	o := &diskExportOptions{globals: g}
	return &cobra.Command{
		Use:   "export NAME[@REPLICA] FILE|-",
		Short: "Copy a disk or replica out as a raw image (sparse where the disk is empty)",
		Args:  exactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			return runDiskExport(c.Context(), o, args)
		},
	}
}

func runDiskExport(ctx context.Context, o *diskExportOptions, args []string) (err error) {
	ref, err := volume.ParseRef(args[0])
	if err != nil {
		return err
	}
	path := args[1]
	cl, err := o.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	er, err := cl.Export(ctx, ref)
	if err != nil {
		return err
	}
	defer er.Close()

	out := o.stdout
	var sparse *os.File
	if path != "-" {
		f, oerr := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if oerr != nil {
			return fmt.Errorf("export: %w", oerr)
		}
		fi, serr := f.Stat()
		if serr != nil {
			f.Close()
			return fmt.Errorf("export: %w", serr)
		}
		if fi.Mode().IsRegular() {
			sparse = f
		}
		out = f
		defer func() {
			if cerr := f.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("export: %w", cerr)
			}
			if err != nil && sparse != nil {
				os.Remove(path) // never leave a partial image that looks complete
			}
		}()
	}
	bar := newProgress(o.globals, "export "+ref.String(), er.Size())
	data, err := writeExport(er, out, sparse, bar)
	bar.done()
	if err != nil {
		return fmt.Errorf("export %s: %w", ref, err)
	}
	if path != "-" {
		fmt.Fprintf(o.stdout, "exported %s to %s: size %s, data %s\n", ref, path, size.Format(er.Size()), size.Format(data))
	}
	return nil
}
