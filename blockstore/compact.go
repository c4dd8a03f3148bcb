package blockstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ipfs/go-cid"
)

// sweepChunk is how many index entries Sweep and Compact handle per step;
// locks are never held across steps, so puts and gets go on meanwhile.
const sweepChunk = 1024

// compactBatchBytes bounds the memory a compaction step copies through.
const compactBatchBytes = 16 << 20

// Sweep deletes the blocks of generation <= gen that keep rejects, then
// compacts (see Compact). keep is called without any lock held and may use
// the store. A block put or put again after the BeginGC that returned gen
// is never deleted, even if keep rejects it. Sweep stops early with
// ctx.Err() or ErrClosed; what it deleted until then stays deleted.
func (d *Disk) Sweep(ctx context.Context, gen uint64, keep func(cid.Cid) bool) (SweepStats, error) {
	var st SweepStats
	if err := d.enter(); err != nil {
		return st, err
	}
	defer d.exit()
	d.gcMu.Lock()
	defer d.gcMu.Unlock()
	var after []byte
	for {
		if err := d.interrupted(ctx); err != nil {
			return st, err
		}
		var old [][]byte
		last, n, err := d.idx.chunk(after, sweepChunk, func(key []byte, l location) error {
			if l.gen <= gen {
				old = append(old, append([]byte(nil), key...))
			}
			return nil
		})
		if err != nil {
			return st, fmt.Errorf("sweep: %w", err)
		}
		var doomed [][]byte
		for _, key := range old {
			c, err := keyCID(key)
			if err != nil {
				return st, fmt.Errorf("sweep: %w", err)
			}
			if !keep(c) {
				doomed = append(doomed, key)
			}
		}
		if err := d.deleteOld(doomed, gen, &st); err != nil {
			return st, fmt.Errorf("sweep: %w", err)
		}
		if n < sweepChunk {
			break
		}
		after = last
	}
	reclaimed, err := d.compact(ctx)
	st.Reclaimed = reclaimed
	if err != nil {
		return st, fmt.Errorf("sweep: %w", err)
	}
	return st, nil
}

// interrupted returns ctx.Err(), or ErrClosed once Close has begun.
func (d *Disk) interrupted(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.lifeMu.Lock()
	defer d.lifeMu.Unlock()
	if d.closed {
		return ErrClosed
	}
	return nil
}

// deleteOld deletes the entries of keys that are still of generation <=
// gen: one put again since the scan has moved on to a newer generation.
func (d *Disk) deleteOld(keys [][]byte, gen uint64, st *SweepStats) error {
	if len(keys) == 0 {
		return nil
	}
	d.idxMu.Lock()
	defer d.idxMu.Unlock()
	b := d.idx.db.NewBatch()
	defer b.Close()
	var gone []location
	for _, key := range keys {
		l, ok, err := d.idx.get(key)
		if err != nil {
			return err
		}
		if !ok || l.gen > gen {
			continue
		}
		if err := b.Delete(key, nil); err != nil {
			return fmt.Errorf("index batch: %w", err)
		}
		gone = append(gone, l)
	}
	if b.Empty() {
		return nil
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("index commit: %w", noSpace(err))
	}
	for _, l := range gone {
		d.forgetLocked(l)
		st.Blocks++
		st.Bytes += int64(l.len)
	}
	return nil
}

// Compact gives back the space of dead records. It first removes the
// sealed segments with nothing live, which needs no room, then rewrites
// those whose live fraction is below Options.CompactBelow: it copies their
// live records to the active segment, syncs them, repoints the index
// entries that still point to the old records, syncs the index, and only
// then deletes the old files. The active segment counts as sealed when it
// is worth rewriting: it is sealed first, so that a store whose garbage is
// all in it (a small one) gets its space back too. It returns the bytes
// given back to the file system, net of the copies. Safe with concurrent
// Get, Put and Delete. It may use the space kept by Options.MinFreeBytes,
// since it frees more than it takes; a device too full even for that
// stops the rewriting, not Compact: the segments it could not rewrite
// stay as they are, and what was freed until then is returned with no
// error, so that garbage collection on a full device frees what it can.
func (d *Disk) Compact(ctx context.Context) (int64, error) {
	if err := d.enter(); err != nil {
		return 0, err
	}
	defer d.exit()
	d.gcMu.Lock()
	defer d.gcMu.Unlock()
	n, err := d.compact(ctx)
	if err != nil {
		return n, fmt.Errorf("compact: %w", err)
	}
	return n, nil
}

// move is a live record to copy out of a victim segment.
type move struct {
	key  []byte
	from location
	data []byte
}

func (d *Disk) compact(ctx context.Context) (int64, error) {
	dead, partly, err := d.pickVictims()
	if err != nil {
		return 0, err
	}
	if len(dead)+len(partly) == 0 {
		return 0, nil
	}
	// A Delete commits without a sync: were a victim removed before its
	// deletions are durable, a crash could bring back index entries that
	// point into a segment that is gone.
	if err := d.idx.sync(); err != nil {
		return 0, err
	}
	freed, err := d.removeSegments(dead)
	if err != nil || len(partly) == 0 {
		return freed, err
	}
	moves, err := d.liveRecords(ctx, partly)
	if err != nil {
		return freed, err
	}
	// One victim at a time, the least live first, each one's file removed
	// before the next is copied: compaction needs room for the live
	// records of one segment, not of all of them. Rewriting them together
	// could not start on a 1 GiB device holding four 256 MiB segments
	// with 60 MiB live among them and 3 MiB free (torture seed 21), and
	// each attempt's copies ate into what was free.
	order := slices.SortedFunc(maps.Keys(partly), func(a, b uint32) int {
		return cmp.Compare(partly[a].live, partly[b].live)
	})
	var written int64
	for _, id := range order {
		victim := map[uint32]*segment{id: partly[id]}
		w, err := d.rewrite(ctx, moves[id], victim)
		written += w
		if errors.Is(err, ErrNoSpace) {
			d.log.Warn("device full: compaction stopped; the partly live segments left stay until there is room",
				"segment", id, "freed", freed, "copied", written, "err", err)
			return freed - written, nil
		}
		if err != nil {
			return freed - written, err
		}
		if err := d.idx.sync(); err != nil {
			return freed - written, err
		}
		n, err := d.removeSegments(victim) // empty if a record could not be read
		freed += n
		if err != nil {
			return freed - written, err
		}
	}
	d.log.Debug("compacted", "dead", len(dead), "rewritten", len(partly), "freed", freed, "copied", written)
	return freed - written, nil
}

// liveRecords returns, per victim, the live records to copy out of it. No
// new index entry can point into a victim: it is sealed and has no
// appends pending, so the scan finds every live record.
func (d *Disk) liveRecords(ctx context.Context, victims map[uint32]*segment) (map[uint32][]move, error) {
	moves := map[uint32][]move{}
	var after []byte
	for {
		if err := d.interrupted(ctx); err != nil {
			return nil, err
		}
		last, n, err := d.idx.chunk(after, 4*sweepChunk, func(key []byte, l location) error {
			if victims[l.seg] != nil {
				moves[l.seg] = append(moves[l.seg], move{key: append([]byte(nil), key...), from: l})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if n < 4*sweepChunk {
			return moves, nil
		}
		after = last
	}
}

// rewrite copies moves, the live records of victims, to the active
// segment and repoints their index entries; it returns the bytes it
// wrote. A victim with a record it cannot read is dropped from victims
// (see readMoves).
func (d *Disk) rewrite(ctx context.Context, moves []move, victims map[uint32]*segment) (int64, error) {
	var written int64
	for len(moves) > 0 {
		if err := d.interrupted(ctx); err != nil {
			return written, err
		}
		n, size := 0, int64(0)
		for n < len(moves) && (n == 0 || size+moves[n].from.size() <= compactBatchBytes) {
			size += moves[n].from.size()
			n++
		}
		batch := moves[:n]
		moves = moves[n:]
		batch = d.readMoves(batch, victims)
		if len(batch) == 0 {
			continue
		}
		w, err := d.copyMoves(batch)
		written += w
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// removeSegments deletes the files of victims, whose live records are
// elsewhere and whose index deletions are durable, and returns the bytes
// given back.
func (d *Disk) removeSegments(victims map[uint32]*segment) (int64, error) {
	if len(victims) == 0 {
		return 0, nil
	}
	var freed int64
	for id, s := range victims {
		d.segMu.Lock()
		delete(d.segs, id)
		d.segMu.Unlock()
		s.f.Close()
		if err := d.fs.Remove(s.path); err != nil {
			return freed, fmt.Errorf("remove segment %d: %w", id, noSpace(err))
		}
		d.diskBytes.Add(-s.size)
		freed += s.size
	}
	if err := syncDir(d.fs, d.segDir); err != nil {
		return freed, err
	}
	return freed, nil
}

// pickVictims returns the settled segments worth compacting: dead ones,
// with nothing live, and partly live ones. The active segment is sealed
// to be one of them when it is worth it; if the new active segment cannot
// be created for want of space, the old one stays active and out of this
// compaction, but any other failure to create it is returned.
func (d *Disk) pickVictims() (dead, partly map[uint32]*segment, err error) {
	d.appendMu.Lock()
	defer d.appendMu.Unlock()
	d.idxMu.Lock()
	defer d.idxMu.Unlock()
	if a := d.active; !a.sealed && a.pending == 0 && a.size > 0 && d.worthCompacting(a) {
		if err := d.rotateLocked(); err != nil {
			if !errors.Is(err, ErrNoSpace) {
				return nil, nil, fmt.Errorf("seal the active segment %d to compact it: %w", a.id, err)
			}
			d.log.Warn("device full: cannot seal the active segment to compact it", "segment", a.id, "err", err)
		}
	}
	d.segMu.RLock()
	defer d.segMu.RUnlock()
	dead, partly = make(map[uint32]*segment), make(map[uint32]*segment)
	for id, s := range d.segs {
		if s == d.active || !s.sealed || s.pending > 0 {
			continue
		}
		switch {
		case s.live <= 0:
			dead[id] = s
		case d.worthCompacting(s):
			partly[id] = s
		}
	}
	return dead, partly, nil
}

func (d *Disk) worthCompacting(s *segment) bool {
	return s.live <= 0 || float64(s.live) < d.opts.CompactBelow*float64(s.size)
}

// readMoves reads the payloads of batch into the moves' data. A record that
// cannot be read keeps its whole segment: the victim is dropped, so the
// error stays visible to Get and Scrub instead of being compacted away.
func (d *Disk) readMoves(batch []move, victims map[uint32]*segment) []move {
	out := batch[:0]
	for _, m := range batch {
		s := victims[m.from.seg]
		if s == nil {
			continue
		}
		data := make([]byte, m.from.len)
		if _, err := s.f.ReadAt(data, m.from.dataOffset()); err != nil {
			d.log.Error("compaction cannot read a record; keeping its segment",
				"segment", s.id, "offset", m.from.off, "err", err)
			delete(victims, s.id)
			continue
		}
		m.data = data
		out = append(out, m)
	}
	return out
}

// copyMoves appends the records of batch to the active segment, syncs
// them, and repoints each index entry that still names the old record (a
// concurrent Delete, or a Delete and a new Put, may have changed it; then
// the copy is garbage). It returns the bytes it wrote.
func (d *Disk) copyMoves(batch []move) (int64, error) {
	cids := make([][]byte, len(batch))
	for i, m := range batch {
		cids[i] = m.key[1:]
	}
	locs, segs, err := d.appendRecords(cids, func(i int) []byte { return batch[i].data }, false)
	if err != nil {
		return 0, err
	}
	defer d.release(segs)
	var written int64
	for _, l := range locs {
		written += l.size()
	}
	d.idxMu.Lock()
	defer d.idxMu.Unlock()
	b := d.idx.db.NewBatch()
	defer b.Close()
	type repoint struct{ from, to location }
	var done []repoint
	for i, m := range batch {
		cur, ok, err := d.idx.get(m.key)
		if err != nil {
			return written, err
		}
		if !ok || cur.seg != m.from.seg || cur.off != m.from.off {
			continue
		}
		to := locs[i]
		to.gen = cur.gen
		if err := b.Set(m.key, encodeLoc(to), nil); err != nil {
			return written, fmt.Errorf("index batch: %w", err)
		}
		done = append(done, repoint{cur, to})
	}
	if b.Empty() {
		return written, nil
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return written, fmt.Errorf("index commit: %w", noSpace(err))
	}
	d.segMu.RLock()
	defer d.segMu.RUnlock()
	for _, r := range done {
		if s := d.segs[r.from.seg]; s != nil {
			s.live -= r.from.size()
		}
		if s := d.segs[r.to.seg]; s != nil {
			s.live += r.to.size()
		}
	}
	return written, nil
}
