package volume

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
	"path/filepath"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// bitmapPage is the unit in which the dirty bitmap is written back. Sector
// writes are atomic on the devices we care about and a page is written
// whole or is torn at sector boundaries; see overlay.persist for why a torn
// page is harmless.
const bitmapPage = 4096

// overlay is the write side of a disk head: a sparse file as large as the
// disk holding blocks written since the last commit, and a bitmap of which
// blocks those are. Both are made durable by sync. An overlay is not safe
// for concurrent use; the head serialises access.
type overlay struct {
	data      overlayFile
	bitmap    overlayFile
	blockSize int64
	bits      []byte       // persisted view: dirty or being committed
	changed   map[int]bool // bitmap pages changed since the last persist
	// unsynced holds the blocks written since the data file was last
	// synced. Only those whose bit is still set force a sync: the data of
	// a block a commit has just cleared is about to be punched anyway.
	unsynced bitset
	// forceSync is set when a persist failed after deciding to sync.
	forceSync bool
	// syncErr is why a sync of the data file failed; it is sticky. Linux
	// reports a writeback error once and may drop the dirty pages it could
	// not write (ext4, XFS, NFS: the "fsyncgate" problem), so a later sync
	// that succeeds vouches for nothing and the bits it would make durable
	// could name lost data. Every persist fails with it until the overlay
	// is reopened (see openOverlayFile). Guarded by the head's persistMu.
	syncErr error
}

const (
	overlayDataFile   = "overlay"
	overlayBitmapFile = "dirty"
)

// openOverlay opens or creates the overlay of a disk of size bytes in dir.
// The names of files it creates are made durable before it returns: a
// flush syncs the files' data, not the directory entries that find them.
func openOverlay(fsys vfs.FS, dir string, size, blockSize int64) (*overlay, error) {
	if err := fsys.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	data, newData, err := openOverlayFile(fsys, filepath.Join(dir, overlayDataFile), size)
	if err != nil {
		return nil, fmt.Errorf("overlay: %w", mapNoSpace(err))
	}
	bitmap, newBitmap, err := openOverlayFile(fsys, filepath.Join(dir, overlayBitmapFile), -1)
	if err != nil {
		data.Close()
		return nil, fmt.Errorf("overlay: %w", mapNoSpace(err))
	}
	if newData || newBitmap {
		if err := syncDirs(fsys, dir, filepath.Dir(dir)); err != nil {
			data.Close()
			bitmap.Close()
			return nil, fmt.Errorf("overlay: %w", mapNoSpace(err))
		}
	}
	nblocks := size / blockSize
	bits := make([]byte, (nblocks+7)/8)
	if _, err := bitmap.ReadAt(bits, 0); err != nil && !errors.Is(err, io.EOF) {
		data.Close()
		bitmap.Close()
		return nil, fmt.Errorf("overlay: read dirty bitmap: %w", err)
	}
	return &overlay{data: data, bitmap: bitmap, blockSize: blockSize, bits: bits, changed: map[int]bool{}, unsynced: newBitset(nblocks)}, nil
}

func (o *overlay) isSet(i int64) bool { return o.bits[i/8]&(1<<(i%8)) != 0 }

// set sets or clears block i's bit. Setting it says block i's data was
// just written to the overlay.
func (o *overlay) set(i int64, on bool) {
	old := o.bits[i/8]
	if on {
		o.unsynced.set(i)
		o.bits[i/8] |= 1 << (i % 8)
	} else {
		o.bits[i/8] &^= 1 << (i % 8)
	}
	if o.bits[i/8] != old {
		o.changed[int(i/8)/bitmapPage] = true
	}
}

// dirtyBlocks returns the indexes whose bits are set.
func (o *overlay) dirtyBlocks() []int64 {
	var out []int64
	for byteIdx, b := range o.bits {
		for ; b != 0; b &= b - 1 {
			out = append(out, int64(byteIdx)*8+int64(bits.TrailingZeros8(b)))
		}
	}
	return out
}

// clearAll clears every bit.
func (o *overlay) clearAll() {
	clear(o.bits)
	for page := 0; page*bitmapPage < len(o.bits); page++ {
		o.changed[page] = true
	}
}

func (o *overlay) readBlock(i int64, p []byte) error {
	if _, err := o.data.ReadAt(p, i*o.blockSize); err != nil {
		return fmt.Errorf("overlay: read block %d: %w", i, err)
	}
	return nil
}

func (o *overlay) writeAt(p []byte, off int64) error {
	if _, err := o.data.WriteAt(p, off); err != nil {
		return fmt.Errorf("overlay: write at %d: %w", off, mapNoSpace(err))
	}
	return nil
}

// zeroBlocks makes blocks [first, first+n) read as zeros and frees their
// space in the overlay file.
func (o *overlay) zeroBlocks(first, n int64) error {
	if n <= 0 {
		return nil
	}
	if err := punch(o.data, first*o.blockSize, n*o.blockSize); err != nil {
		return fmt.Errorf("overlay: punch blocks %d+%d: %w", first, n, mapNoSpace(err))
	}
	return nil
}

// persistSnap is the bitmap state one persist writes: the pages changed
// since the last one, copied, and whether the data file needs a sync first.
type persistSnap struct {
	needSync bool
	pages    map[int][]byte
}

// snapshot takes the state to persist and starts a new round of change
// tracking. Bits are set only after their block's data was written, so
// every bit in the snapshot vouches for data written before it, which the
// data sync in persistSnapshot then covers.
func (o *overlay) snapshot() persistSnap {
	snap := persistSnap{needSync: o.forceSync, pages: make(map[int][]byte, len(o.changed))}
	o.unsynced.each(func(i int64) { snap.needSync = snap.needSync || o.isSet(i) })
	clear(o.unsynced)
	o.forceSync = false
	for page := range o.changed {
		start := page * bitmapPage
		end := min(start+bitmapPage, len(o.bits))
		snap.pages[page] = append([]byte(nil), o.bits[start:end]...)
	}
	clear(o.changed)
	return snap
}

// persistSnapshot makes a snapshot durable: data first, then the bitmap
// pages. A set bit must never be durable before the data it vouches for.
// Bits are only cleared after a commit has made the blocks durable
// elsewhere, and the data behind a cleared bit is punched only after the
// persist returns, so a page torn between its old and new sectors can only
// resurrect bits whose overlay data is still intact.
func (o *overlay) persistSnapshot(snap persistSnap) error {
	if o.syncErr != nil {
		return o.syncErr
	}
	if snap.needSync {
		if err := o.data.Sync(); err != nil {
			o.syncErr = fmt.Errorf("overlay: an earlier sync of the data failed, writes since the last flush may be lost; restart the daemon to reopen the disk: %w", mapNoSpace(err))
			return fmt.Errorf("overlay: sync data: %w", mapNoSpace(err))
		}
	}
	if len(snap.pages) == 0 {
		return nil
	}
	for page, b := range snap.pages {
		if _, err := o.bitmap.WriteAt(b, int64(page*bitmapPage)); err != nil {
			return fmt.Errorf("overlay: write dirty bitmap: %w", mapNoSpace(err))
		}
	}
	if err := o.bitmap.Sync(); err != nil {
		return fmt.Errorf("overlay: sync dirty bitmap: %w", mapNoSpace(err))
	}
	return nil
}

// retry puts a failed snapshot's work back, so the next persist redoes it.
func (o *overlay) retry(snap persistSnap) {
	o.forceSync = o.forceSync || snap.needSync
	for page := range snap.pages {
		o.changed[page] = true
	}
}

func (o *overlay) close() error {
	return errors.Join(o.data.Close(), o.bitmap.Close())
}

func mapNoSpace(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}
