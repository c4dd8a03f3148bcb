package blockstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ipfs/go-cid"
)

// A put is acknowledged after one flush: the fdatasync of its records. Its
// index entries are committed without a sync, so a crash may lose them; the
// records say what they hold (header, CID, payload), so Open finds them
// again. A synced index commit per put would be a second flush of the
// device per put, which halved what a receiver of 4 MiB requests stored.
//
// The checkpoint bounds that search: the index durably names every
// acknowledged record of the segments below it. The committer raises it,
// with a synced write (which makes every index write before it durable
// too), once every append to the segments below the new value has
// committed; Close raises it past the last segment. Open reads every record
// of the segments at or above it and indexes each one whose payload hashes
// to its CID and whose CID the index lacks, or names with a record that is
// gone or does not verify, reading it from the device after syncing its
// segment: a record whose fsync never finished may still sit whole in the
// page cache, and one whose fsync failed may sit there without being on
// the device (see recoverIndex). A record whose fsync never finished was
// never acknowledged: a torn one fails the header check or the hash and
// stays garbage. A block deleted after its record was written
// may come back, as a deleted block whose removal was not yet durable always
// could; the next sweep removes it again.

// recoverIndex indexes, with generation gen, the records of the segments at
// or above the stored checkpoint whose payloads verify and whose CIDs the
// index lacks or names with a record that does not hold them, and returns
// how many it indexed. It runs in load, before the
// accounting and before segments nothing points to are removed.
func (d *Disk) recoverIndex(gen uint64) (int, error) {
	ck, ok, err := d.idx.loadCheckpoint()
	if err != nil || !ok {
		return 0, err
	}
	b := d.idx.db.NewBatch()
	defer b.Close()
	staged := make(map[string]bool)
	var data, other []byte
	for id, s := range d.segs {
		if id < ck {
			continue
		}
		// A record found here may never have been synced: its put died
		// between the write and the fsync, and the bytes are only in the
		// page cache. It is indexed only once durable, or a power loss
		// after this Open leaves an entry naming bytes that are gone. So
		// the segment is synced first, and then read from the device: a
		// put whose fsync failed in an earlier run may have left bytes in
		// the page cache that the device never got, and Linux reports
		// that failure once, so this sync succeeds over them.
		if err := fdatasync(s.f); err != nil {
			return 0, fmt.Errorf("recover segment %d: sync: %w", id, noSpace(err))
		}
		dropCache(s.f)
		err := scanRecords(s.f, s.size, func(off int64, cidBytes []byte, dataLen int) (bool, error) {
			if dataLen > MaxBlockSize {
				return false, nil
			}
			c, err := cid.Cast(cidBytes)
			if err != nil || CheckCID(c) != nil {
				return false, nil
			}
			key := append([]byte{blockPrefix}, cidBytes...)
			have, indexed, err := d.idx.get(key)
			if err != nil {
				return false, err
			}
			if indexed && have.seg == id && have.off == off {
				return true, nil // the index names this very record
			}
			l := location{seg: id, off: off, len: uint32(dataLen), gen: gen, klen: uint16(len(cidBytes))}
			data = slices.Grow(data[:0], dataLen)[:dataLen]
			if _, err := s.f.ReadAt(data, l.dataOffset()); err != nil || Verify(c, data) != nil {
				return false, nil // never synced, or not a record: garbage
			}
			if staged[string(key)] || indexed && d.holds(have, c, &other) {
				return true, nil
			}
			staged[string(key)] = true
			return true, b.Set(key, encodeLoc(l), nil)
		})
		if err != nil {
			return 0, fmt.Errorf("recover segment %d: %w", id, err)
		}
	}
	if b.Empty() {
		return 0, nil
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, fmt.Errorf("recover index: %w", noSpace(err))
	}
	return len(staged), nil
}

// holds reports whether the record at l is there and verifies against c,
// reading its payload into *buf. An index entry that fails this (its
// segment removed before a Delete of it was durable, its bytes damaged) is
// replaced by a record of c that the scan finds and verifies.
func (d *Disk) holds(l location, c cid.Cid, buf *[]byte) bool {
	s := d.segs[l.seg]
	if s == nil || l.len > MaxBlockSize || l.off < 0 || l.off+l.size() > s.size {
		return false
	}
	*buf = slices.Grow((*buf)[:0], int(l.len))[:l.len]
	if _, err := s.f.ReadAt(*buf, l.dataOffset()); err != nil {
		return false
	}
	return Verify(c, *buf) == nil
}

// advanceCheckpoint raises the checkpoint to the oldest segment that may
// still get a commit: the active one, or an older one with appends pending.
// Only the committer calls it while the store is open.
func (d *Disk) advanceCheckpoint() {
	d.appendMu.Lock()
	to := d.active.id
	d.segMu.RLock()
	for id := d.checkpoint; id < to; id++ {
		if s := d.segs[id]; s != nil && s.pending > 0 {
			to = id
		}
	}
	d.segMu.RUnlock()
	d.appendMu.Unlock()
	if to <= d.checkpoint {
		return
	}
	if err := d.idx.storeCheckpoint(to); err != nil {
		// Open then reads more segments; nothing acknowledged is lost.
		d.log.Warn("raise index checkpoint", "segment", to, "err", err)
		return
	}
	d.checkpoint = to
}

// scanRecords calls fn for every record in the first size bytes of r whose
// header checks out (magic, CRC, a payload that ends within size), with the
// record's offset, CID bytes and data length. fn reports whether the record
// is sound (its payload verified, or the index names it); the scan goes on
// after a sound record, and otherwise from the next magic after its start.
// Its claimed length is not trusted: a torn put's payload (guest data) may
// hold a record-like header whose length covers records that were written
// and synced. The scan reads past what is not a record for the same
// reason: a hole left by a write that never happened (a concurrent put
// reserved it, then the process died) may lie before such records.
func scanRecords(r io.ReaderAt, size int64, fn func(off int64, cidBytes []byte, dataLen int) (bool, error)) error {
	w := window{r: r, size: size, buf: make([]byte, scanWindow)}
	var off int64
	for {
		at, found, err := w.nextMagic(off)
		if err != nil || !found {
			return err
		}
		hdr, err := w.bytes(at, recordHeaderSize)
		if err != nil {
			return err
		}
		off = at + 1
		if hdr == nil {
			continue
		}
		cidLen := int(binary.LittleEndian.Uint16(hdr[4:]))
		dataLen := int(binary.LittleEndian.Uint32(hdr[8:]))
		want := binary.LittleEndian.Uint32(hdr[12:])
		crc := crc32.Checksum(hdr[:12], castagnoli)
		head, err := w.bytes(at, recordHeaderSize+cidLen)
		if err != nil {
			return err
		}
		if head == nil || at+recordSize(cidLen, dataLen) > size {
			continue
		}
		cidBytes := head[recordHeaderSize:]
		if crc32.Update(crc, castagnoli, cidBytes) != want {
			continue
		}
		sound, err := fn(at, bytes.Clone(cidBytes), dataLen)
		if err != nil {
			return err
		}
		if sound {
			off = at + recordSize(cidLen, dataLen)
		}
	}
}

// scanWindow is how much of a segment scanRecords reads at a time.
const scanWindow = 1 << 20

// window is a sliding view of a segment: scanRecords reads each byte of it
// about once, however many false magics it holds.
type window struct {
	r     io.ReaderAt
	size  int64
	buf   []byte
	start int64 // segment offset of buf[0]
	n     int   // bytes of buf read
}

// load reads the window starting at off.
func (w *window) load(off int64) error {
	n, err := w.r.ReadAt(w.buf[:min(int64(len(w.buf)), w.size-off)], off)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read at %d: %w", off, err)
	}
	w.start, w.n = off, n
	return nil
}

// bytes returns the n bytes at off, valid until the next call, or nil if
// the segment ends before them.
func (w *window) bytes(off int64, n int) ([]byte, error) {
	if off+int64(n) > w.size {
		return nil, nil
	}
	if off < w.start || off+int64(n) > w.start+int64(w.n) {
		if err := w.load(off); err != nil {
			return nil, err
		}
		if w.n < n {
			return nil, nil // the file is shorter than its recorded size
		}
	}
	return w.buf[off-w.start:][:n], nil
}

// nextMagic returns the offset of the first record magic at or after off.
func (w *window) nextMagic(off int64) (int64, bool, error) {
	magic := []byte(recordMagic)
	for off+int64(len(magic)) <= w.size {
		end := w.start + int64(w.n)
		if off < w.start || off+int64(len(magic)) > end {
			if err := w.load(off); err != nil {
				return 0, false, err
			}
			if end = w.start + int64(w.n); w.n < len(magic) {
				return 0, false, nil
			}
		}
		if i := bytes.Index(w.buf[off-w.start:w.n], magic); i >= 0 {
			return off + int64(i), true, nil
		}
		// A magic may straddle the window's end.
		off = end - int64(len(magic)-1)
	}
	return 0, false, nil
}
