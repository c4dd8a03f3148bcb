package scsi

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
)

// memBackend is an in-memory Backend that records what the unit asked of
// it: flushes, punches and plain zeroing, and can fail on demand.
type memBackend struct {
	mu        sync.Mutex
	data      []byte
	blockSize int64
	readOnly  bool
	failWith  error // returned by every I/O call when set
	flushes   int
	punched   int64 // bytes zeroed with punch
	zeroed    int64 // bytes zeroed without punch
	writes    int
	unflushed int // writes since the last flush: not yet durable
}

func newMem(size, blockSize int64) *memBackend {
	return &memBackend{data: make([]byte, size), blockSize: blockSize}
}

func (m *memBackend) check(off, n int64) error {
	if m.failWith != nil {
		return m.failWith
	}
	if off < 0 || n < 0 || off+n > int64(len(m.data)) {
		return fmt.Errorf("range %d+%d outside %d", off, n, len(m.data))
	}
	return nil
}

func (m *memBackend) ReadAt(_ context.Context, p []byte, off int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(off, int64(len(p))); err != nil {
		return err
	}
	copy(p, m.data[off:])
	return nil
}

func (m *memBackend) WriteAt(_ context.Context, p []byte, off int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.readOnly {
		return ErrReadOnly
	}
	if err := m.check(off, int64(len(p))); err != nil {
		return err
	}
	m.writes++
	m.unflushed++
	copy(m.data[off:], p)
	return nil
}

func (m *memBackend) Zero(_ context.Context, off, n int64, punch bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(off, n); err != nil {
		return err
	}
	clear(m.data[off : off+n])
	if punch {
		m.punched += n
	} else {
		m.zeroed += n
	}
	return nil
}

func (m *memBackend) Flush(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failWith != nil {
		return m.failWith
	}
	m.flushes++
	m.unflushed = 0
	return nil
}

func (m *memBackend) Size() int64      { return int64(len(m.data)) }
func (m *memBackend) BlockSize() int64 { return m.blockSize }
func (m *memBackend) ReadOnly() bool   { return m.readOnly }

// The unit's geometry in the tests: 1 MiB of 64 KiB disk blocks, 2048
// logical blocks, 128 per disk block.
const (
	testSize      = 1 << 20
	testBlockSize = 64 << 10
	testBlocks    = testSize / LogicalBlockSize
)

func newTestLU(t *testing.T) (*LU, *memBackend) {
	t.Helper()
	m := newMem(testSize, testBlockSize)
	return NewLU(m, LUInfo{Serial: "disk-1"}), m
}

// run executes a CDB with data-out and a generous expected length.
func run(l *LU, cdb []byte, dataOut []byte) Result {
	return l.Execute(context.Background(), Command{CDB: cdb, DataOut: dataOut, AllocLen: 1 << 24})
}

// CDB builders, in the layouts of SBC-3: opcode, byte 1's flags, LBA
// and transfer length where each size puts them.
func cdb(size int, op, flags byte, lba uint64, n uint32) []byte {
	c := make([]byte, size)
	c[0], c[1] = op, flags
	be := binary.BigEndian
	switch size {
	case 10:
		be.PutUint32(c[2:6], uint32(lba))
		be.PutUint16(c[7:9], uint16(n))
	case 12:
		be.PutUint32(c[2:6], uint32(lba))
		be.PutUint32(c[6:10], n)
	default:
		be.PutUint64(c[2:10], lba)
		be.PutUint32(c[10:14], n)
	}
	return c
}

func cdb10(op, flags byte, lba uint32, n uint16) []byte {
	return cdb(10, op, flags, uint64(lba), uint32(n))
}
func cdb12(op, flags byte, lba, n uint32) []byte        { return cdb(12, op, flags, uint64(lba), n) }
func cdb16(op, flags byte, lba uint64, n uint32) []byte { return cdb(16, op, flags, lba, n) }

func cdb6(op byte, lba uint32, n byte) []byte {
	return []byte{op, byte(lba >> 16 & 0x1f), byte(lba >> 8), byte(lba), n, 0}
}

// senseOf is a Result's sense key, ASC and ASCQ.
type senseCode struct{ key, asc, ascq byte }

func (s senseCode) String() string {
	return fmt.Sprintf("%#x/%#02x/%#02x", s.key, s.asc, s.ascq)
}

var goodStatus = senseCode{}

// ILLEGAL REQUEST answers about the CDB.
var (
	illegalOpcode      = senseCode{keyIllegalRequest, 0x20, 0}
	invalidField       = senseCode{keyIllegalRequest, 0x24, 0}
	lbaOutOfRange      = senseCode{keyIllegalRequest, 0x21, 0}
	savingNotSupported = senseCode{keyIllegalRequest, 0x39, 0}
)

// ILLEGAL REQUEST answers about the data-out.
var (
	invalidParam    = senseCode{keyIllegalRequest, 0x26, 0}
	paramListLength = senseCode{keyIllegalRequest, 0x1a, 0}
	invalidFieldIU  = senseCode{keyIllegalRequest, 0x0e, 0x03}
)

// Answers about the medium and the data.
var (
	writeProtected        = senseCode{keyDataProtect, 0x27, 0}
	spaceAllocationFailed = senseCode{keyDataProtect, 0x27, 0x07}
	miscompareCode        = senseCode{keyMiscompare, 0x1d, 0}
	readError             = senseCode{keyMediumError, 0x11, 0}
	writeError            = senseCode{keyMediumError, 0x0c, 0}
)

// senseOf decodes a Result's status and sense: good for GOOD.
func senseOf(t *testing.T, r Result) senseCode {
	t.Helper()
	if r.Status == StatusGood {
		if r.Sense != nil {
			t.Errorf("GOOD with sense %x", r.Sense)
		}
		return goodStatus
	}
	if r.Status != StatusCheckCondition {
		t.Fatalf("status %#x, want GOOD or CHECK CONDITION", r.Status)
	}
	if len(r.Sense) != fixedSenseLen || r.Sense[0]&0x7f != 0x70 || r.Sense[7] != fixedSenseLen-8 {
		t.Fatalf("sense %x is not fixed-format current sense of %d bytes", r.Sense, fixedSenseLen)
	}
	if r.DataIn != nil {
		t.Errorf("CHECK CONDITION with %d bytes of data-in", len(r.DataIn))
	}
	return senseCode{r.Sense[2] & 0x0f, r.Sense[12], r.Sense[13]}
}

func wantSense(t *testing.T, name string, r Result, want senseCode) {
	t.Helper()
	if got := senseOf(t, r); got != want {
		t.Errorf("%s: got sense %v, want %v", name, got, want)
	}
}

// fieldPointer decodes the sense-key-specific field pointer: whether it
// points into the CDB, the byte and the bit (-1: none).
func fieldPointer(t *testing.T, r Result) (inCDB bool, byteAt int, bit int) {
	t.Helper()
	s := r.Sense
	if len(s) < 18 || s[15]&0x80 == 0 {
		t.Fatalf("sense %x has no SKSV field pointer", s)
	}
	bit = -1
	if s[15]&0x08 != 0 {
		bit = int(s[15] & 0x07)
	}
	return s[15]&0x40 != 0, int(binary.BigEndian.Uint16(s[16:18])), bit
}

func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i*7) + byte(i>>9)
	}
	return p
}
