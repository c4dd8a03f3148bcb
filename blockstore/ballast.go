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
// back afterwards, and an index write that finds the device full deletes
// it (below), after which puts keep at least ballastSize free (see
// appendRecords).
//
// Pebble panics when a write to its log fails, and another writer (the
// disks' overlays, the catalog, another program) can take the last bytes
// between a put's free-space check and its index commit. So Pebble gets
// the file system through vfs.OnDiskFull: an index write that finds the
// device full releases the ballast and is retried once (the rest of a
// short write), a failed sync is not (see fsyncgate). Only with the
// ballast already gone does the error reach Pebble. Pebble already
// preallocates each log to 110% of a memtable and recycles old logs, so a
// log needs new space only when it outgrows that, as when flushes fail on
// a full device.
//
// The ballast goes only when an index write finds the device full, never
// ahead of need: a ballast released early (a put refused for space, a
// delete on a nearly full device) hands its bytes to whichever writer
// comes next, the disks' overlays as likely as the index, and the index
// then finds the device full with nothing left to give (the torture saw a
// daemon die so). Puts stop at MinFreeBytes and the overlays at their own
// floor (volume.Config.MinFreeBytes), so the bytes the ballast frees stay
// for the index unless another program takes them.

func (o Options) ballastSize() int64 { return 2*o.IndexMemTableBytes + 1<<20 }

func ballastPath(dir string) string { return filepath.Join(dir, "ballast") }

// releaseBallast deletes the ballast file because the device is full. It
// takes no lock: an index write that finds the device full calls it from
// inside Pebble, whose caller may hold appendMu.
func (d *Disk) releaseBallast() {
	if d.dropBallast() {
		d.log.Warn("device full: released the index ballast", "bytes", d.opts.ballastSize())
	}
}

// dropBallast deletes the ballast file and reports whether it did. Of
// concurrent callers, one deletes it.
func (d *Disk) dropBallast() bool {
	if !d.ballast.CompareAndSwap(true, false) {
		return false
	}
	if err := d.fs.Remove(ballastPath(d.dir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		d.ballast.Store(true)
		d.log.Warn("remove ballast", "err", err)
		return false
	}
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
	d.ballast.Store(true)
}
