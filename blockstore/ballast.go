package blockstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Pebble needs free space to open (it flushes the replayed log) and to
// commit (a failed log write is fatal to it). A full device must not wedge
// the index, so the store keeps a ballast file, dir/ballast, of
// ballastSize bytes: Open deletes it before opening the index and puts it
// back afterwards, and the first ENOSPC from a segment deletes it, after
// which puts keep at least ballastSize free (see appendRecords).

func (o Options) ballastSize() int64 { return 2*o.IndexMemTableBytes + 1<<20 }

func ballastPath(dir string) string { return filepath.Join(dir, "ballast") }

// releaseBallast deletes the ballast file because the device is full. The
// caller holds appendMu.
func (d *Disk) releaseBallast() {
	if d.dropBallast() {
		d.log.Warn("device full: released the index ballast", "bytes", d.opts.ballastSize())
	}
}

// dropBallast deletes the ballast file and reports whether it did. The
// caller holds appendMu or is Open.
func (d *Disk) dropBallast() bool {
	if !d.ballast {
		return false
	}
	if err := d.fs.Remove(ballastPath(d.dir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		d.log.Warn("remove ballast", "err", err)
		return false
	}
	d.ballast = false
	return true
}

// placeBallast (re)creates the ballast file, best effort: on a full device
// the store runs without it, keeping its size free instead.
func (d *Disk) placeBallast() {
	path := ballastPath(d.dir)
	err := func() error {
		f, err := d.fs.Create(path, vfs.WriteCategoryUnspecified)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := allocate(f, d.opts.ballastSize()); err != nil {
			return err
		}
		return f.Sync()
	}()
	if err != nil {
		d.fs.Remove(path)
		d.log.Warn("cannot place the index ballast; keeping its size free instead",
			"bytes", d.opts.ballastSize(), "err", fmt.Errorf("ballast: %w", err))
		return
	}
	d.ballast = true
}
