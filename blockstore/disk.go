package blockstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/internal/atomicfile"
)

// Disk is the durable Store: block bytes in append-only segment files under
// dir/segments, and a Pebble index under dir/index mapping each CID to its
// record and GC generation. The index is the source of truth; a record it
// does not point to is garbage, reclaimed by Compact.
//
// Every method is safe for concurrent use. A Put is durable when it returns:
// its records are fsynced before it returns, and Open indexes again any
// record whose index entry a crash lost (see recover.go).
type Disk struct {
	dir    string
	segDir string
	fs     vfs.FS
	opts   Options
	log    *slog.Logger
	idx    *index

	lifeMu sync.Mutex
	closed bool
	ops    sync.WaitGroup // operations in flight, awaited by Close

	appendMu sync.Mutex // the append position: active segment and segment sizes
	active   *segment
	nextSeg  uint32
	ballast  atomic.Bool // the ballast file is in place (see ballast.go)

	segMu sync.RWMutex // the segment table; held for reading during a pread
	segs  map[uint32]*segment

	// idxMu serialises every read-modify-write of the index (put commits,
	// deletes, sweeps, compaction repoints) and generation changes, so a
	// put that returns after BeginGC carries the new generation.
	idxMu sync.Mutex
	gen   uint64

	gcMu sync.Mutex // one Sweep or Compact at a time

	commits chan *commitReq
	// checkpoint is the stored checkpoint (see recover.go); owned by load,
	// then the committer, then Close.
	checkpoint uint32
	stop       chan struct{}
	stopped    chan struct{}

	blocks, bytes, diskBytes atomic.Int64

	trusted trustedRecords // records hashed by this process, for GetToSend
}

var _ Store = (*Disk)(nil)

// Open opens the store in dir, creating it if needed. It rebuilds the
// accounting from the index, ignores whatever a crash left at segment tails,
// and starts a fresh active segment so nothing is ever appended after a
// torn record. Only one Disk may have dir open at a time.
func Open(dir string, opts Options) (*Disk, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "blockstore")
	segDir := filepath.Join(dir, "segments")
	fs := opts.fsOf()
	if err := atomicfile.MkdirAllIn(fs, segDir, 0o755); err != nil {
		return nil, fmt.Errorf("open blockstore %s: %w", dir, noSpace(err))
	}
	d := &Disk{
		dir: dir, segDir: segDir, fs: fs, opts: opts, log: log,
		segs:    make(map[uint32]*segment),
		commits: make(chan *commitReq, 64),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	d.ballast.Store(true)
	d.dropBallast() // room for the index to replay its log, even on a full device
	idxOpts := opts
	idxOpts.FS = vfs.OnDiskFull(fs, d.releaseBallast)
	idx, err := openIndex(filepath.Join(dir, "index"), idxOpts, log)
	if err != nil {
		return nil, fmt.Errorf("open blockstore: %w", err)
	}
	d.idx = idx
	d.placeBallast()
	if err := d.load(); err != nil {
		d.closeFiles()
		idx.close()
		return nil, fmt.Errorf("open blockstore %s: %w", dir, err)
	}
	go d.committer()
	log.Info("opened", "dir", dir, "blocks", d.blocks.Load(), "bytes", d.bytes.Load(),
		"disk_bytes", d.diskBytes.Load(), "segments", len(d.segs), "generation", d.gen)
	return d, nil
}

// load opens the segments, rebuilds the accounting from the index, drops
// segments nothing points to and starts a new active segment.
func (d *Disk) load() error {
	gen, err := d.idx.loadGen()
	if err != nil {
		return err
	}
	ids, err := listSegments(d.fs, d.segDir)
	if err != nil {
		return fmt.Errorf("list segments: %w", err)
	}
	for _, id := range ids {
		s, err := openSegment(d.fs, d.segDir, id)
		if err != nil {
			return err
		}
		d.segs[id] = s
		d.nextSeg = id + 1
	}
	recovered, err := d.recoverIndex(max(gen, 1))
	if err != nil {
		return err
	}
	if recovered > 0 {
		d.log.Info("indexed blocks whose index entries a crash lost", "blocks", recovered)
	}
	var missing int64
	var after []byte
	for {
		last, n, err := d.idx.chunk(after, 4096, func(_ []byte, l location) error {
			d.blocks.Add(1)
			d.bytes.Add(int64(l.len))
			gen = max(gen, l.gen)
			if s := d.segs[l.seg]; s != nil {
				s.live += l.size()
			} else {
				missing++
			}
			return nil
		})
		if err != nil {
			return err
		}
		if n < 4096 {
			break
		}
		after = last
	}
	if missing > 0 {
		d.log.Error("index entries point to missing segments; those blocks read as corrupt", "blocks", missing)
	}
	d.gen = max(gen, 1)
	removed := false
	for id, s := range d.segs {
		if s.live > 0 {
			d.diskBytes.Add(s.size)
			continue
		}
		// Nothing points here: an empty active segment from the last run,
		// or one whose acknowledged records all died.
		s.f.Close()
		delete(d.segs, id) // closed: Open's error path must not close it again
		if err := d.fs.Remove(s.path); err != nil {
			return fmt.Errorf("remove dead segment %d: %w", id, noSpace(err))
		}
		removed = true
	}
	if removed {
		if err := syncDir(d.fs, d.segDir); err != nil {
			return err
		}
	}
	if d.nextSeg == 0 {
		d.nextSeg = 1
	}
	if err := d.rotateLocked(); err != nil {
		return err
	}
	// Every record before the new active segment is indexed durably now.
	if err := d.idx.storeCheckpoint(d.active.id); err != nil {
		return err
	}
	d.checkpoint = d.active.id
	return nil
}

// rotateLocked seals the active segment and starts a new one. The caller
// holds appendMu (or is Open).
func (d *Disk) rotateLocked() error {
	// The id is used up even if creating fails: a failed creation may
	// leave the file behind (its removal can fail too), and the next
	// rotation must not trip over it. Open removes it as a dead segment.
	id := d.nextSeg
	d.nextSeg++
	s, err := createSegment(d.fs, d.segDir, id)
	if err != nil {
		return err
	}
	if d.active != nil {
		d.active.sealed = true
	}
	d.active = s
	d.segMu.Lock()
	d.segs[s.id] = s
	d.segMu.Unlock()
	return nil
}

// enter registers an operation; it fails once Close has begun.
func (d *Disk) enter() error {
	d.lifeMu.Lock()
	defer d.lifeMu.Unlock()
	if d.closed {
		return ErrClosed
	}
	d.ops.Add(1)
	return nil
}

func (d *Disk) exit() { d.ops.Done() }

// Get returns a fresh copy of the block's bytes after verifying them
// against c. It returns ErrNotFound if the block is absent and ErrCorrupt
// (wrapped) if the stored bytes are damaged or missing from their segment.
func (d *Disk) Get(ctx context.Context, c cid.Cid) ([]byte, error) {
	return d.get(ctx, c, false, nil)
}

// GetAppend is Get appending the block to dst and returning the result,
// so that a reader of many blocks (an export) reuses its buffers. Every
// block is verified, as by Get: an export's file has no receiver that
// would verify it.
func (d *Disk) GetAppend(ctx context.Context, c cid.Cid, dst []byte) ([]byte, error) {
	return d.get(ctx, c, false, dst)
}

// get appends the block to dst and returns the result; with trust set, a
// record in d.trusted is not hashed.
func (d *Disk) get(ctx context.Context, c cid.Cid, trust bool, dst []byte) ([]byte, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	defer d.exit()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	key := blockKey(c)
	var prev location
	for attempt := 0; ; attempt++ {
		l, ok, err := d.idx.get(key)
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", c, err)
		}
		if !ok {
			return nil, fmt.Errorf("get %s: %w", c, ErrNotFound)
		}
		out, found, rerr := d.read(l, dst)
		if !found || rerr != nil {
			// Compaction may have moved the record and removed its
			// segment since the lookup: look again if the index moved.
			if (attempt == 0 || l != prev) && attempt < 8 {
				prev = l
				continue
			}
			if rerr == nil {
				rerr = fmt.Errorf("segment %d missing", l.seg)
			}
			return nil, fmt.Errorf("get %s: %w: %w", c, ErrCorrupt, rerr)
		}
		if trust && d.trusted.has(l) {
			return out, nil
		}
		if err := Verify(c, out[len(dst):]); err != nil {
			d.trusted.forget(l)
			return nil, fmt.Errorf("get: segment %d offset %d: %w", l.seg, l.off, err)
		}
		d.trusted.add(l)
		return out, nil
	}
}

// read preads a record's payload, appended to dst (into a fresh slice of
// its size if dst is nil). found is false if its segment is gone.
func (d *Disk) read(l location, dst []byte) (data []byte, found bool, err error) {
	d.segMu.RLock()
	defer d.segMu.RUnlock()
	s := d.segs[l.seg]
	if s == nil {
		return nil, false, nil
	}
	if dst == nil {
		dst = make([]byte, 0, l.len)
	}
	data = slices.Grow(dst, int(l.len))[:len(dst)+int(l.len)]
	if _, err := s.f.ReadAt(data[len(dst):], l.dataOffset()); err != nil {
		return nil, true, fmt.Errorf("read segment %d offset %d: %w", l.seg, l.off, err)
	}
	return data, true, nil
}

// Has reports whether the block is present, from the index alone.
func (d *Disk) Has(ctx context.Context, c cid.Cid) (bool, error) {
	if err := d.enter(); err != nil {
		return false, err
	}
	defer d.exit()
	_, ok, err := d.idx.get(blockKey(c))
	if err != nil {
		return false, fmt.Errorf("has %s: %w", c, err)
	}
	return ok, nil
}

// HasMany reports, for each CID in order, whether its block is present,
// from the index alone. It seeks one iterator through the keys in order,
// which costs a fraction of a lookup per key: each lookup of Has sets up
// the index's levels afresh.
func (d *Disk) HasMany(ctx context.Context, cids []cid.Cid) ([]bool, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	defer d.exit()
	keys := make([][]byte, len(cids))
	order := make([]int, len(cids))
	for i, c := range cids {
		keys[i] = blockKey(c)
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return bytes.Compare(keys[a], keys[b]) })
	it, err := d.idx.db.NewIter(&pebble.IterOptions{LowerBound: blockLower, UpperBound: blockUpper})
	if err != nil {
		return nil, fmt.Errorf("has %d blocks: index: %w", len(cids), err)
	}
	out := make([]bool, len(cids))
	for n, i := range order {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				it.Close()
				return nil, err
			}
		}
		out[i] = it.SeekGE(keys[i]) && bytes.Equal(it.Key(), keys[i])
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("has %d blocks: index: %w", len(cids), err)
	}
	return out, nil
}

// Delete removes the block's index entry; its bytes become garbage for
// Compact. The removal is made durable by the next durable write, so a
// crash may bring a deleted block back; the next sweep removes it again.
func (d *Disk) Delete(ctx context.Context, c cid.Cid) error {
	if err := d.enter(); err != nil {
		return err
	}
	defer d.exit()
	key := blockKey(c)
	d.idxMu.Lock()
	defer d.idxMu.Unlock()
	l, ok, err := d.idx.get(key)
	if err != nil || !ok {
		if err != nil {
			return fmt.Errorf("delete %s: %w", c, err)
		}
		return nil
	}
	if err := d.idx.db.Delete(key, pebble.NoSync); err != nil {
		return fmt.Errorf("delete %s: %w", c, noSpace(err))
	}
	d.forgetLocked(l)
	return nil
}

// forgetLocked updates the accounting for a removed index entry. The
// caller holds idxMu.
func (d *Disk) forgetLocked(l location) {
	d.blocks.Add(-1)
	d.bytes.Add(-int64(l.len))
	d.segMu.RLock()
	if s := d.segs[l.seg]; s != nil {
		s.live -= l.size()
	}
	d.segMu.RUnlock()
}

// All yields the CID of every stored block, in index order. It holds no
// lock or iterator while yielding, so the loop body may use the store.
func (d *Disk) All(ctx context.Context) iter.Seq2[cid.Cid, error] {
	const chunk = 1024
	return func(yield func(cid.Cid, error) bool) {
		var after []byte
		for {
			if err := ctx.Err(); err != nil {
				yield(cid.Undef, err)
				return
			}
			var keys [][]byte
			last, n, err := d.scan(after, chunk, func(key []byte, _ location) error {
				keys = append(keys, append([]byte(nil), key[1:]...))
				return nil
			})
			if err != nil {
				yield(cid.Undef, err)
				return
			}
			for _, k := range keys {
				c, err := cid.Cast(k)
				if err != nil {
					err = fmt.Errorf("all: index key %x: %w", k, err)
				}
				if !yield(c, err) {
					return
				}
			}
			if n < chunk {
				return
			}
			after = last
		}
	}
}

// scan is index.chunk as an operation of d.
func (d *Disk) scan(after []byte, n int, fn func(key []byte, l location) error) ([]byte, int, error) {
	if err := d.enter(); err != nil {
		return nil, 0, err
	}
	defer d.exit()
	return d.idx.chunk(after, n, fn)
}

// BeginGC starts a new generation, persists it, and returns the previous
// one. Generations never go back, across restarts too. If persisting
// fails, the error is logged: Open restores at least the highest
// generation of any stored block, so safety does not depend on it.
func (d *Disk) BeginGC() uint64 {
	d.idxMu.Lock()
	defer d.idxMu.Unlock()
	d.gen++
	if err := d.enter(); err == nil {
		if err := d.idx.storeGen(d.gen); err != nil {
			d.log.Error("persist GC generation", "generation", d.gen, "err", err)
		}
		d.exit()
	}
	return d.gen - 1
}

// Stats returns the store's accounting. DiskBytes counts segment files,
// including garbage not yet compacted; the index is not included.
func (d *Disk) Stats() Stats {
	return Stats{Blocks: d.blocks.Load(), Bytes: d.bytes.Load(), DiskBytes: d.diskBytes.Load()}
}

// Close waits for operations in flight, syncs and closes the segments and
// the index. Later calls of other methods return ErrClosed; calling Close
// again returns nil.
func (d *Disk) Close() error {
	d.lifeMu.Lock()
	if d.closed {
		d.lifeMu.Unlock()
		return nil
	}
	d.closed = true
	d.lifeMu.Unlock()
	d.ops.Wait()
	close(d.stop)
	<-d.stopped
	var errs []error
	d.appendMu.Lock()
	if d.active != nil {
		if err := d.active.sync(); err != nil {
			errs = append(errs, err)
		}
	}
	d.appendMu.Unlock()
	if len(errs) == 0 {
		// Every put has committed: the next Open reads no segment again.
		if err := d.idx.storeCheckpoint(d.nextSeg); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, d.closeFiles())
	if err := d.idx.close(); err != nil {
		errs = append(errs, fmt.Errorf("close index: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close blockstore %s: %w", d.dir, err)
	}
	return nil
}

func (d *Disk) closeFiles() error {
	d.segMu.Lock()
	defer d.segMu.Unlock()
	var errs []error
	for _, s := range d.segs {
		if err := s.f.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
