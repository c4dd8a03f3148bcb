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
// Puts stop at MinFreeBytes, so when other writers (the disks' overlays,
// other programs) fill the file system, no segment ever sees ENOSPC. The
// ballast then also goes once the free space is below its size: when a
// put is refused for space, and before index writes that keep no floor
// (deletes), which would otherwise find the file system full.

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

// releaseBallastIfFull releases the ballast if the file system holding
// the segments has less than the ballast's size free. The caller holds
// appendMu.
func (d *Disk) releaseBallastIfFull() {
	if !d.ballast.Load() {
		return
	}
	du, err := d.fs.GetDiskUsage(d.segDir)
	if err != nil {
		d.log.Warn("cannot read the free space; keeping the index ballast", "err", fmt.Errorf("free space of %s: %w", d.segDir, err))
		return
	}
	if int64(du.AvailBytes) < d.opts.ballastSize() {
		d.releaseBallast()
	}
}

// roomForIndex makes room for an index write that keeps no floor (a
// delete): the ballast goes if the file system is full.
func (d *Disk) roomForIndex() {
	d.appendMu.Lock()
	defer d.appendMu.Unlock()
	d.releaseBallastIfFull()
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
