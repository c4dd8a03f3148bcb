package blockstore

import (
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Options configures a Disk store. Start from DefaultOptions and change what
// you need; Open calls Validate.
type Options struct {
	// SegmentSize is the size at which the active segment file is sealed and
	// a new one started. A block larger than SegmentSize gets a segment of
	// its own. Compaction copies the live records of one segment at a time,
	// at most CompactBelow of it, before the segment's file goes: keep that
	// below the free space a full node still has (the default's 32 MiB is
	// the volumes' overlay floor, which nothing but the index and
	// compaction goes below), or a full node cannot get its space back.
	SegmentSize int64
	// CompactBelow is the live fraction (0..1) under which a sealed segment
	// is rewritten by Compact (and therefore by Sweep). 0 disables
	// compaction of partly live segments; wholly dead segments are always
	// removed.
	CompactBelow float64
	// MinFreeBytes is the free space Put leaves on the file system. A Put
	// that would leave less fails with ErrNoSpace before writing anything.
	// The reserve keeps room for the index, which cannot survive a full
	// disk gracefully (Pebble treats a failed log write as fatal). 0 turns
	// the check off and relies on the file system's ENOSPC alone.
	MinFreeBytes int64
	// IndexCacheBytes is the block cache of the Pebble index.
	IndexCacheBytes int64
	// IndexMemTableBytes is the Pebble memtable size. Pebble preallocates
	// about 110% of it for each write-ahead log file.
	IndexMemTableBytes int64
	// Logger receives the store's logs (and Pebble's, at debug level).
	// Nil discards them.
	Logger *slog.Logger
	// FS holds every file of the store: segments, ballast and index. Nil
	// is the OS's (vfs.Default). Power-loss tests give a crashable
	// in-memory one, or one that fails chosen operations (see fs.go).
	FS vfs.FS
}

// DefaultOptions returns the options for a production store: 256 MiB
// segments compacted below half live, 64 MiB of free space kept in reserve,
// a modest index cache.
func DefaultOptions() Options {
	return Options{
		SegmentSize:        64 << 20,
		CompactBelow:       0.5,
		MinFreeBytes:       64 << 20,
		IndexCacheBytes:    16 << 20,
		IndexMemTableBytes: 4 << 20,
	}
}

// Validate reports the first option that is out of range.
func (o Options) Validate() error {
	switch {
	case o.SegmentSize < 1<<16:
		return fmt.Errorf("blockstore options: segment size %d, want >= 64 KiB", o.SegmentSize)
	case o.SegmentSize > 1<<40:
		return fmt.Errorf("blockstore options: segment size %d, want <= 1 TiB", o.SegmentSize)
	case o.CompactBelow < 0 || o.CompactBelow > 1:
		return fmt.Errorf("blockstore options: compact-below %v, want 0..1", o.CompactBelow)
	case o.MinFreeBytes < 0:
		return fmt.Errorf("blockstore options: min free bytes %d, want >= 0", o.MinFreeBytes)
	case o.IndexCacheBytes < 0:
		return fmt.Errorf("blockstore options: index cache %d, want >= 0", o.IndexCacheBytes)
	case o.IndexMemTableBytes < 64<<10 || o.IndexMemTableBytes >= 1<<30:
		return fmt.Errorf("blockstore options: index memtable %d, want 64 KiB .. 1 GiB", o.IndexMemTableBytes)
	}
	return nil
}
