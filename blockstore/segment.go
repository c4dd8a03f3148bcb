package blockstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Segment files hold block bytes as a sequence of records:
//
//	magic "WFB1" | cid length u16 | flags u16 (0) | data length u32 |
//	CRC-32C of the previous 12 bytes and the CID u32 | CID | data
//
// Integers are little-endian. The header makes a segment self-describing
// for scrubbing and debugging, but the index is the source of truth: a
// record the index does not point to is garbage, whatever it contains.
const (
	recordMagic      = "WFB1"
	recordHeaderSize = 16
	segmentExt       = ".seg"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordSize is the size on disk of a record.
func recordSize(cidLen, dataLen int) int64 {
	return int64(recordHeaderSize + cidLen + dataLen)
}

// appendRecord appends the record of (cidBytes, data) to buf.
func appendRecord(buf, cidBytes, data []byte) []byte {
	return append(appendRecordHead(buf, cidBytes, len(data)), data...)
}

// appendRecordHead appends a record's header and CID: everything but the
// payload of dataLen bytes that follows them.
func appendRecordHead(buf, cidBytes []byte, dataLen int) []byte {
	start := len(buf)
	buf = append(buf, recordMagic...)
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(cidBytes)))
	buf = binary.LittleEndian.AppendUint16(buf, 0)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(dataLen))
	crc := crc32.Update(crc32.Checksum(buf[start:], castagnoli), castagnoli, cidBytes)
	buf = binary.LittleEndian.AppendUint32(buf, crc)
	return append(buf, cidBytes...)
}

// maxIovecs is how many buffers one pwritev takes (Linux's IOV_MAX).
const maxIovecs = 1024

// writeRecords writes the records of cids[first:first+n] at off with
// pwritev, straight from the callers' buffers: the payloads are not copied
// in user space. It returns the number of bytes written.
func writeRecords(s *segment, off int64, cids [][]byte, data func(int) []byte, first, n int) (int64, error) {
	heads := make([]byte, 0, n*(recordHeaderSize+64))
	iovs := make([][]byte, 0, 2*n)
	for i := first; i < first+n; i++ {
		start := len(heads)
		heads = appendRecordHead(heads, cids[i], len(data(i)))
		iovs = append(iovs, heads[start:len(heads):len(heads)])
		if len(data(i)) > 0 {
			iovs = append(iovs, data(i))
		}
	}
	return pwritev(s.f, s.path, off, iovs)
}

// location is where a block's record lives, and the GC generation the
// block was last put in. It is the value of a block's index entry.
type location struct {
	seg  uint32 // segment id
	off  int64  // offset of the record in the segment
	len  uint32 // payload length
	gen  uint64 // GC generation
	klen uint16 // CID length; not stored, filled in from the key
}

// dataOffset is the offset of the payload in the segment.
func (l location) dataOffset() int64 { return l.off + recordHeaderSize + int64(l.klen) }

// size is the size of the whole record.
func (l location) size() int64 { return recordSize(int(l.klen), int(l.len)) }

// segment is one append-only file of records.
type segment struct {
	id   uint32
	path string
	f    vfs.File

	// Guarded by Disk.appendMu.
	size    int64 // append position; the file may be shorter while writes are in flight
	sealed  bool  // no more appends
	pending int   // appends reserved but not yet committed or abandoned

	// Guarded by Disk.idxMu.
	live int64 // bytes of the records the index points to

	// Group fsync: writers count completed writes; one fsync covers every
	// write completed before it started.
	writes  atomic.Uint64
	syncMu  sync.Mutex
	synced  uint64
	syncErr error // sticky: after a failed fsync the page cache state is unknown
}

func segmentName(id uint32) string { return fmt.Sprintf("%08d%s", id, segmentExt) }

// createSegment creates segment id in dir and makes its name durable.
func createSegment(fs vfs.FS, dir string, id uint32) (*segment, error) {
	path := filepath.Join(dir, segmentName(id))
	// vfs.FS has no O_EXCL: Create would replace a file of that name.
	switch _, err := fs.Stat(path); {
	case err == nil:
		return nil, fmt.Errorf("create segment %d: %s exists", id, path)
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("create segment %d: check %s: %w", id, path, noSpace(err))
	}
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, fmt.Errorf("create segment %d: %w", id, noSpace(err))
	}
	if err := syncDir(fs, dir); err != nil {
		f.Close()
		fs.Remove(path)
		return nil, fmt.Errorf("create segment %d: %w", id, err)
	}
	return &segment{id: id, path: path, f: f}, nil
}

// listSegments returns the ids of the segment files in dir, ascending.
func listSegments(fs vfs.FS, dir string) ([]uint32, error) {
	names, err := fs.List(dir)
	if err != nil {
		return nil, err
	}
	var ids []uint32
	for _, e := range names {
		name, ok := strings.CutSuffix(e, segmentExt)
		if !ok {
			continue
		}
		id, err := strconv.ParseUint(name, 10, 32)
		if err != nil || segmentName(uint32(id)) != e {
			continue
		}
		ids = append(ids, uint32(id))
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids, nil
}

// openSegment opens an existing segment for reading (and for Corrupt).
func openSegment(fs vfs.FS, dir string, id uint32) (*segment, error) {
	path := filepath.Join(dir, segmentName(id))
	f, err := fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, fmt.Errorf("open segment %d: %w", id, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open segment %d: %w", id, err)
	}
	return &segment{id: id, path: path, f: f, size: fi.Size(), sealed: true}, nil
}

// sync makes every write completed before the call durable, sharing one
// fdatasync among concurrent callers.
func (s *segment) sync() error {
	seq := s.writes.Load()
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.syncErr != nil {
		return s.syncErr
	}
	if s.synced >= seq {
		return nil
	}
	target := s.writes.Load()
	if err := fdatasync(s.f); err != nil {
		s.syncErr = fmt.Errorf("sync segment %d: %w", s.id, noSpace(err))
		return s.syncErr
	}
	s.synced = target
	return nil
}

// noSpace wraps ErrNoSpace around an error caused by a full device or quota.
func noSpace(err error) error {
	if err == nil || errors.Is(err, ErrNoSpace) {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}
