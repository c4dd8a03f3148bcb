package blockstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ipfs/go-cid"
)

// The put path: the caller's goroutine verifies the blocks, reserves space
// at the append position (one short critical section), writes its records
// with pwrite and fsyncs the segments (outside the lock, fsyncs shared
// among concurrent callers), then hands the new locations to the committer
// goroutine, which folds every request waiting at that moment into one
// Pebble batch. The batch is not synced: the segment's fsync is the put's
// one flush, and Open indexes again what a crash lost (recover.go).

// commitItem is one block of a commit request.
type commitItem struct {
	key     []byte
	loc     location // where it was written, if written
	written bool     // false: only refresh the generation of a present block
	replace bool     // written over a stored copy that read back damaged
}

type commitReq struct {
	items []commitItem
	retry []int // items not written whose block vanished before the commit
	err   error
	done  chan struct{}
}

// Put stores one block durably.
func (d *Disk) Put(ctx context.Context, b Block) error {
	return d.PutMany(ctx, []Block{b})
}

// PutMany stores blocks durably: when it returns nil every block is on
// stable storage and indexed. It verifies each block against its CID first
// and stores nothing if any fails. Blocks already present are not written
// again; their generation is brought up to the current one. A present
// block whose stored copy this process has not verified is read back
// first, and one that is damaged is written again and takes its index
// entry, so a put that returns nil leaves every block readable. Errors caused
// by a full device wrap ErrNoSpace; nothing acknowledged earlier is lost.
func (d *Disk) PutMany(ctx context.Context, bs []Block) error {
	for _, b := range bs {
		if len(b.Data) > MaxBlockSize {
			return fmt.Errorf("put %s: %d bytes exceeds the %d-byte limit", b.CID, len(b.Data), MaxBlockSize)
		}
		if err := b.verify(); err != nil {
			return fmt.Errorf("put: %w", err)
		}
	}
	if err := d.enter(); err != nil {
		return err
	}
	defer d.exit()
	if err := ctx.Err(); err != nil {
		return err
	}
	seen := make(map[string]bool, len(bs))
	var write, rewrite, touch []Block
	for _, b := range bs {
		k := b.CID.KeyString()
		if seen[k] {
			continue
		}
		seen[k] = true
		l, ok, err := d.idx.get(blockKey(b.CID))
		if err != nil {
			return fmt.Errorf("put %s: %w", b.CID, err)
		}
		switch {
		case !ok:
			write = append(write, b)
		case d.storedIntact(l, b.Data):
			touch = append(touch, b)
		default:
			d.log.Warn("block put again over a damaged stored copy: writing it again", "cid", b.CID, "segment", l.seg, "offset", l.off)
			rewrite = append(rewrite, b)
		}
	}
	// A present block deleted before the commit is written in a second
	// round; written blocks always settle, so this ends.
	for len(write)+len(rewrite)+len(touch) > 0 {
		retry, err := d.putRound(write, rewrite, touch)
		if err != nil {
			return err
		}
		write, rewrite, touch = retry, nil, nil
	}
	return nil
}

// storedIntact reports whether the record at l holds data, which the
// caller verified: a record this process wrote or verified is taken as
// intact, any other is read back (a comparison costs less than a hash),
// and remembered as verified when it matches. A record gone from its
// segment (compaction moved it meanwhile) counts as damaged: writing the
// block again costs one record of garbage.
func (d *Disk) storedIntact(l location, data []byte) bool {
	if d.trusted.has(l) {
		return true
	}
	if int(l.len) != len(data) {
		return false
	}
	got, found, err := d.read(l, nil)
	if !found || err != nil || !bytes.Equal(got, data) {
		return false
	}
	d.trusted.add(l)
	return true
}

// putRound writes write, and rewrite over its damaged stored copies,
// commits them together with the generation refresh of touch, and returns
// the blocks of touch that vanished meanwhile.
func (d *Disk) putRound(write, rewrite, touch []Block) ([]Block, error) {
	req := &commitReq{done: make(chan struct{})}
	var segs []*segment
	var locs []location
	if appended := slices.Concat(write, rewrite); len(appended) > 0 {
		var err error
		locs, segs, err = d.appendBlocks(appended, true)
		if err != nil {
			return nil, fmt.Errorf("put %s: %w", appended[0].CID, err)
		}
		for i, b := range appended {
			req.items = append(req.items, commitItem{key: blockKey(b.CID), loc: locs[i], written: true, replace: i >= len(write)})
		}
	}
	written := len(req.items)
	for _, b := range touch {
		req.items = append(req.items, commitItem{key: blockKey(b.CID)})
	}
	d.commits <- req
	<-req.done
	d.release(segs)
	if req.err != nil {
		return nil, fmt.Errorf("put: %w", req.err)
	}
	// PutMany verified every block it wrote.
	d.trusted.add(locs...)
	var retry []Block
	for _, i := range req.retry {
		retry = append(retry, touch[i-written])
	}
	return retry, nil
}

// appendBlocks writes the records of bs and syncs them. The segments it
// returns carry a pending append each, which keeps Compact off them until
// the caller releases them after committing (or abandoning) the records.
// With reserve set it refuses to eat into Options.MinFreeBytes.
func (d *Disk) appendBlocks(bs []Block, reserve bool) ([]location, []*segment, error) {
	recs := make([][]byte, len(bs))
	for i, b := range bs {
		recs[i] = b.CID.Bytes()
	}
	return d.appendRecords(recs, func(i int) []byte { return bs[i].Data }, reserve)
}

// appendRecords writes one record per CID in cids, with payload data(i).
func (d *Disk) appendRecords(cids [][]byte, data func(int) []byte, reserve bool) ([]location, []*segment, error) {
	type run struct {
		seg   *segment
		off   int64
		first int
		n     int
	}
	var runs []run
	locs := make([]location, len(cids))

	d.appendMu.Lock()
	minFree := d.opts.MinFreeBytes
	if !d.ballast.Load() {
		minFree = max(minFree, d.opts.ballastSize())
	}
	if reserve && minFree > 0 {
		var need int64
		for i := range cids {
			need += recordSize(len(cids[i]), len(data(i)))
		}
		// A file system that cannot tell (an in-memory one) is never full.
		if du, err := d.fs.GetDiskUsage(d.segDir); err == nil {
			free := int64(du.AvailBytes)
			if free-need < minFree {
				d.appendMu.Unlock()
				return nil, nil, fmt.Errorf("%w: %d bytes free, %d needed plus a %d-byte reserve",
					ErrNoSpace, free, need, minFree)
			}
			// Space has come back: the ballast goes back too, so that the
			// next time the device fills the index has it to give back
			// (without it, Pebble's log write finding the device full is
			// fatal to the process).
			if !d.ballast.Load() && free-need >= d.opts.MinFreeBytes+2*d.opts.ballastSize() {
				d.placeBallast()
			}
		}
	}
	for i := range cids {
		size := recordSize(len(cids[i]), len(data(i)))
		a := d.active
		if a.sealed || (a.size > 0 && a.size+size > d.opts.SegmentSize) {
			if err := d.rotateLocked(); err != nil {
				for _, r := range runs {
					r.seg.pending--
				}
				d.appendMu.Unlock()
				return nil, nil, err
			}
			a = d.active
		}
		if len(runs) == 0 || runs[len(runs)-1].seg != a {
			a.pending++
			runs = append(runs, run{seg: a, off: a.size, first: i})
		}
		runs[len(runs)-1].n++
		locs[i] = location{seg: a.id, off: a.size, len: uint32(len(data(i))), klen: uint16(len(cids[i]))}
		a.size += size
		d.diskBytes.Add(size)
	}
	d.appendMu.Unlock()

	segs := make([]*segment, len(runs))
	for i, r := range runs {
		segs[i] = r.seg
	}
	for _, r := range runs {
		n, err := writeRecords(r.seg, r.off, cids, data, r.first, r.n)
		if err != nil {
			d.abandon(r.seg, r.off, runBytes(cids, data, r.first, r.n))
			d.release(segs)
			return nil, nil, fmt.Errorf("write segment %d: %w", r.seg.id, noSpace(err))
		}
		r.seg.writes.Add(1)
		// Start writeback now rather than at the fsync below: the device
		// works while this and other callers go on hashing and copying.
		startWriteback(r.seg.f, r.off, n)
	}
	for _, r := range runs {
		if err := r.seg.sync(); err != nil {
			d.appendMu.Lock()
			r.seg.sealed = true
			d.appendMu.Unlock()
			d.release(segs)
			return nil, nil, err
		}
	}
	return locs, segs, nil
}

// abandon handles a failed write: the segment is sealed so later appends
// go to a fresh file, and if nothing was reserved after the failed range
// the file is cut back to give the space back. A full device keeps the
// ballast: it is the index's (see ballast.go).
func (d *Disk) abandon(s *segment, off, n int64) {
	d.appendMu.Lock()
	defer d.appendMu.Unlock()
	s.sealed = true
	if s.size == off+n && truncate(s.f, off) {
		s.size = off
		d.diskBytes.Add(-n)
	}
}

// release drops the pending appends taken by appendRecords.
func (d *Disk) release(segs []*segment) {
	if len(segs) == 0 {
		return
	}
	d.appendMu.Lock()
	defer d.appendMu.Unlock()
	for _, s := range segs {
		s.pending--
	}
}

// committer runs until Close, committing requests in groups.
func (d *Disk) committer() {
	defer close(d.stopped)
	for {
		var group []*commitReq
		select {
		case r := <-d.commits:
			group = append(group, r)
		case <-d.stop:
			return
		}
	drain:
		for len(group) < 256 {
			select {
			case r := <-d.commits:
				group = append(group, r)
			default:
				break drain
			}
		}
		d.commitGroup(group)
		for _, r := range group {
			close(r.done)
		}
		d.advanceCheckpoint()
	}
}

// commitGroup decides, under idxMu, what each item does to the index, and
// commits it all in one batch, not synced: every record it names is synced
// already and above the checkpoint. A written block that turns out to be
// present already (a concurrent put won) leaves its record as garbage.
func (d *Disk) commitGroup(group []*commitReq) {
	fail := func(err error) {
		for _, r := range group {
			r.err = err
			r.retry = nil
		}
	}
	d.idxMu.Lock()
	defer d.idxMu.Unlock()
	gen := d.gen
	b := d.idx.db.NewBatch()
	defer b.Close()
	staged := make(map[string]location)
	var blocks, bytes int64
	live := make(map[uint32]int64)
	for _, r := range group {
		for i, it := range r.items {
			cur, ok := staged[string(it.key)]
			if !ok {
				var err error
				cur, ok, err = d.idx.get(it.key)
				if err != nil {
					fail(err)
					return
				}
			}
			switch {
			case ok && it.replace:
				// Its stored copy read back damaged: the record just
				// written takes the entry, and the old one is garbage.
				live[cur.seg] -= cur.size()
				bytes += int64(it.loc.len) - int64(cur.len)
				cur = it.loc
				cur.gen = gen
				live[cur.seg] += cur.size()
			case ok && cur.gen >= gen:
				continue
			case ok:
				cur.gen = gen
			case it.written:
				cur = it.loc
				cur.gen = gen
				blocks++
				bytes += int64(cur.len)
				live[cur.seg] += cur.size()
			default:
				r.retry = append(r.retry, i)
				continue
			}
			staged[string(it.key)] = cur
			if err := b.Set(it.key, encodeLoc(cur), nil); err != nil {
				fail(fmt.Errorf("index batch: %w", err))
				return
			}
		}
	}
	if !b.Empty() {
		if err := b.Commit(pebble.NoSync); err != nil {
			fail(fmt.Errorf("index commit: %w", noSpace(err)))
			return
		}
	}
	d.blocks.Add(blocks)
	d.bytes.Add(bytes)
	d.segMu.RLock()
	for id, n := range live {
		if s := d.segs[id]; s != nil {
			s.live += n
		}
	}
	d.segMu.RUnlock()
}

// keyCID turns an index key back into a CID.
func keyCID(key []byte) (cid.Cid, error) {
	c, err := cid.Cast(key[1:])
	if err != nil {
		return cid.Undef, fmt.Errorf("index key %x: %w", key, err)
	}
	return c, nil
}

// runBytes is the size on disk of the records cids[first:first+n].
func runBytes(cids [][]byte, data func(int) []byte, first, n int) int64 {
	var size int64
	for i := first; i < first+n; i++ {
		size += recordSize(len(cids[i]), len(data(i)))
	}
	return size
}
