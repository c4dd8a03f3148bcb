package blockstore

import (
	"context"
	"errors"
	"iter"

	"github.com/ipfs/go-cid"
)

// Errors returned by stores. Check them with errors.Is.
var (
	// ErrNotFound means the store does not hold the block.
	ErrNotFound = errors.New("block not found")
	// ErrCorrupt means the stored bytes do not hash to the block's CID. The
	// bytes are never returned.
	ErrCorrupt = errors.New("block corrupt")
	// ErrNoSpace means the device holding the store is full. Nothing
	// acknowledged before it is lost.
	ErrNoSpace = errors.New("out of space")
	// ErrClosed means the store was used after Close.
	ErrClosed = errors.New("store closed")
)

// Getter reads blocks. Get verifies the bytes against the CID and returns
// ErrCorrupt rather than bad data. The returned slice belongs to the caller.
type Getter interface {
	Get(ctx context.Context, c cid.Cid) ([]byte, error)
}

// Haser tells whether a block is present without reading it.
type Haser interface {
	Has(ctx context.Context, c cid.Cid) (bool, error)
}

// ManyHaser tells which of many blocks are present, in one pass over the
// store's index rather than one lookup per block: heal asks it of every
// block of the catalog on every pass.
type ManyHaser interface {
	// HasMany reports, for each CID in order, whether its block is present.
	HasMany(ctx context.Context, cids []cid.Cid) ([]bool, error)
}

// Putter stores blocks. A block is durable when Put or PutMany returns nil.
// Putting a block that is already present is cheap and marks it as used in
// the current GC generation, so a concurrent sweep keeps it; a stored copy
// that is damaged is replaced by the block put, so a block put is readable.
// The store does not keep b.Data after returning: the caller may reuse it.
type Putter interface {
	Put(ctx context.Context, b Block) error
	PutMany(ctx context.Context, bs []Block) error
}

// Deleter removes blocks. Deleting an absent block is not an error.
type Deleter interface {
	Delete(ctx context.Context, c cid.Cid) error
}

// Lister iterates over every stored block's CID, in no particular order.
// Blocks put or deleted during the iteration may or may not be seen.
type Lister interface {
	All(ctx context.Context) iter.Seq2[cid.Cid, error]
}

// Sweeper is the store's half of mark-and-sweep garbage collection.
//
// The collector calls BeginGC, which starts a new generation and returns
// the previous one; every block put (or put again) from then on belongs to
// the new generation. The collector then marks every block reachable from
// the live roots it saw after BeginGC and calls Sweep, which deletes the
// blocks of generation <= gen that keep rejects. Blocks written after
// BeginGC are never swept, which is what makes collection safe while
// commits run.
type Sweeper interface {
	BeginGC() (gen uint64)
	Sweep(ctx context.Context, gen uint64, keep func(cid.Cid) bool) (SweepStats, error)
}

// SweepStats says what a sweep removed.
type SweepStats struct {
	Blocks int64 // blocks deleted
	Bytes  int64 // payload bytes deleted
	// Reclaimed is the disk space given back to the file system, which can
	// lag Bytes when freed space is reclaimed lazily.
	Reclaimed int64
}

// Stats is a store's size accounting.
type Stats struct {
	Blocks    int64 // blocks stored
	Bytes     int64 // payload bytes of those blocks
	DiskBytes int64 // bytes the store occupies on disk, including garbage
}

// Store is a complete local block store: every role plus accounting.
// All methods are safe for concurrent use.
type Store interface {
	Getter
	Haser
	ManyHaser
	Putter
	Deleter
	Lister
	Sweeper
	Stats() Stats
	Close() error
}
