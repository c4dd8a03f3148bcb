package main

import (
	"context"
	"fmt"
	"github.com/weft-mesh/weft/api"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/size"
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
	ref, err := api.ParseRef(args[0])
	if err != nil {
		return err
	}
	path := args[1]
	cl, err := o.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	if path == "-" {
		return streamExport(ctx, o, cl, ref, o.stdout)
	}
	before, statErr := os.Stat(path)
	// Not truncated here: the daemon truncates the file once it has the
	// disk open, so a refused export leaves an existing file as it was.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("export: %w", err)
	}
	if !fi.Mode().IsRegular() {
		// A device or a pipe gets every byte, zeros included.
		err = streamExport(ctx, o, cl, ref, f)
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("export: %w", cerr)
		}
		return err
	}
	// The daemon writes the file itself through the descriptor passed to
	// it: no byte crosses the socket, zero blocks stay holes, and the file
	// is synced when the daemon answers.
	bar := newProgress(o.globals, "export "+ref.String(), -1)
	res, err := cl.ExportFile(ctx, ref, f, bar.setOf)
	bar.done()
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("export: %w", cerr)
	}
	if err != nil {
		// Never leave a partial image that looks complete.
		if after, serr := os.Stat(path); statErr != nil || serr != nil || after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
			os.Remove(path)
		}
		return err
	}
	fmt.Fprintf(o.stdout, "exported %s to %s: size %s, data %s\n", ref, path, size.Format(res.Size), size.Format(res.Data))
	return nil
}

// streamExport copies the disk's export stream to out, every byte.
func streamExport(ctx context.Context, o *diskExportOptions, cl *api.Client, ref api.Ref, out io.Writer) error {
	er, err := cl.Export(ctx, ref)
	if err != nil {
		return err
	}
	defer er.Close()
	bar := newProgress(o.globals, "export "+ref.String(), er.Size())
	err = writeExport(er, out, bar)
	bar.done()
	if err != nil {
		return fmt.Errorf("export %s: %w", ref, err)
	}
	return nil
}
