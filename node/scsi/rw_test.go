package scsi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

const (
	opRead6         = 0x08
	opWrite6        = 0x0a
	opRead10        = 0x28
	opWrite10       = 0x2a
	opWriteVerify10 = 0x2e
	opVerify10      = 0x2f
	opPrefetch10    = 0x34
	opSync10        = 0x35
	opWriteSame10   = 0x41
	opUnmap         = 0x42
	opRead16        = 0x88
	opCAW           = 0x89
	opWrite16       = 0x8a
	opORWrite       = 0x8b
	opVerify16      = 0x8f
	opSync16        = 0x91
	opWriteSame16   = 0x93
	opRead12        = 0xa8
	opWrite12       = 0xaa
)

// TestReadWriteForms writes with each WRITE form and reads back with each
// READ form: the data lands at lba*512 and comes back the same.
func TestReadWriteForms(t *testing.T) {
	type form struct {
		name  string
		read  func(lba uint64, n uint32) []byte
		write func(lba uint64, n uint32) []byte
	}
	forms := []form{
		{"6", func(lba uint64, n uint32) []byte { return cdb6(opRead6, uint32(lba), byte(n)) },
			func(lba uint64, n uint32) []byte { return cdb6(opWrite6, uint32(lba), byte(n)) }},
		{"10", func(lba uint64, n uint32) []byte { return cdb10(opRead10, 0, uint32(lba), uint16(n)) },
			func(lba uint64, n uint32) []byte { return cdb10(opWrite10, 0, uint32(lba), uint16(n)) }},
		{"12", func(lba uint64, n uint32) []byte { return cdb12(opRead12, 0, uint32(lba), n) },
			func(lba uint64, n uint32) []byte { return cdb12(opWrite12, 0, uint32(lba), n) }},
		{"16", func(lba uint64, n uint32) []byte { return cdb16(opRead16, 0, lba, n) },
			func(lba uint64, n uint32) []byte { return cdb16(opWrite16, 0, lba, n) }},
	}
	for i, w := range forms {
		for j, r := range forms {
			t.Run("write"+w.name+"/read"+r.name, func(t *testing.T) {
				l, m := newTestLU(t)
				lba, n := uint64(100+i*10+j), uint32(3)
				p := pattern(int(n)*LogicalBlockSize, byte(i*4+j))
				wantSense(t, "write", run(l, w.write(lba, n), p), goodStatus)
				if !bytes.Equal(m.data[lba*512:lba*512+uint64(len(p))], p) {
					t.Fatalf("backend at %d does not hold what WRITE(%s) sent", lba*512, w.name)
				}
				res := run(l, r.read(lba, n), nil)
				wantSense(t, "read", res, goodStatus)
				if !bytes.Equal(res.DataIn, p) || res.Length != len(p) {
					t.Fatalf("READ(%s) got %d bytes (Length %d), want the %d written", r.name, len(res.DataIn), res.Length, len(p))
				}
			})
		}
	}
}

// TestRead6ZeroMeans256: a READ(6) transfer length of 0 means 256 blocks.
func TestRead6ZeroMeans256(t *testing.T) {
	l, _ := newTestLU(t)
	res := run(l, cdb6(opRead6, 0, 0), nil)
	wantSense(t, "READ(6) of 0", res, goodStatus)
	if len(res.DataIn) != 256*LogicalBlockSize {
		t.Fatalf("got %d bytes, want %d", len(res.DataIn), 256*LogicalBlockSize)
	}
}

// TestRangeChecks: the last block is addressable, anything past it is
// LBA OUT OF RANGE, even with lengths that overflow 64 bits; zero-length
// transfers are no-ops inside the unit and refused beyond it.
func TestRangeChecks(t *testing.T) {
	l, m := newTestLU(t)
	last := uint64(testBlocks - 1)
	block := make([]byte, LogicalBlockSize)
	cases := []struct {
		name string
		cdb  []byte
		out  []byte
		want senseCode
	}{
		{"read last block", cdb16(opRead16, 0, last, 1), nil, goodStatus},
		{"read past end", cdb16(opRead16, 0, last, 2), nil, lbaOutOfRange},
		{"read at end", cdb16(opRead16, 0, testBlocks, 1), nil, lbaOutOfRange},
		{"read LBA -1", cdb16(opRead16, 0, ^uint64(0), 1), nil, lbaOutOfRange},
		{"read LBA 2^63", cdb16(opRead16, 0, 1<<63, 1), nil, lbaOutOfRange},
		{"read 0 blocks at end", cdb10(opRead10, 0, testBlocks, 0), nil, goodStatus},
		{"read 0 blocks past end", cdb10(opRead10, 0, testBlocks+1, 0), nil, lbaOutOfRange},
		{"read10 LBA -1", cdb10(opRead10, 0, 0xffffffff, 1), nil, lbaOutOfRange},
		{"read6 past end", cdb6(opRead6, testBlocks-1, 2), nil, lbaOutOfRange},
		{"write last block", cdb16(opWrite16, 0, last, 1), block, goodStatus},
		{"write past end", cdb16(opWrite16, 0, last, 2), append(block, block...), lbaOutOfRange},
		{"write 0 blocks", cdb10(opWrite10, 0, 5, 0), nil, goodStatus},
		{"read over max transfer", cdb16(opRead16, 0, 0, MaxTransferBlocks+1), nil, invalidField},
		{"write over max transfer", cdb16(opWrite16, 0, 0, MaxTransferBlocks+1), nil, invalidField},
		{"verify past end", cdb16(opVerify16, 0, last, 2), nil, lbaOutOfRange},
		{"sync cache past end", cdb16(opSync16, 0, last, 2), nil, lbaOutOfRange},
		{"prefetch past end", cdb10(opPrefetch10, 0, uint32(last), 2), nil, lbaOutOfRange},
	}
	for _, c := range cases {
		wantSense(t, c.name, run(l, c.cdb, c.out), c.want)
	}
	if m.writes != 1 {
		t.Errorf("backend saw %d writes, want 1 (the last-block write alone)", m.writes)
	}
}

// TestFUAFlushes: WRITE with FUA flushes before it completes; without, it
// does not.
func TestFUAFlushes(t *testing.T) {
	l, m := newTestLU(t)
	block := pattern(LogicalBlockSize, 1)
	wantSense(t, "write", run(l, cdb10(opWrite10, 0, 0, 1), block), goodStatus)
	if m.flushes != 0 {
		t.Fatalf("plain WRITE flushed %d times, want 0", m.flushes)
	}
	for _, c := range [][]byte{cdb10(opWrite10, 0x08, 0, 1), cdb12(opWrite12, 0x08, 0, 1), cdb16(opWrite16, 0x08, 0, 1)} {
		before := m.flushes
		wantSense(t, fmt.Sprintf("FUA write %#x", c[0]), run(l, c, block), goodStatus)
		if m.flushes != before+1 {
			t.Errorf("FUA WRITE %#x: %d flushes, want 1", c[0], m.flushes-before)
		}
	}
	// DPO and the obsolete FUA_NV are accepted (libiscsi's write flags
	// test sends them).
	wantSense(t, "DPO FUA FUA_NV", run(l, cdb10(opWrite10, 0x1a, 0, 1), block), goodStatus)
}

// TestWriteAndVerifyIsDurable: WRITE AND VERIFY, with or without BYTCHK,
// completes only once its data is durable (flushed, as SYNCHRONIZE CACHE
// would): the initiator asked for it to be checked against the medium,
// not a cache (a review found it acknowledged unflushed).
func TestWriteAndVerifyIsDurable(t *testing.T) {
	l, m := newTestLU(t)
	block := pattern(LogicalBlockSize, 3)
	for _, c := range [][]byte{
		cdb10(opWriteVerify10, 0, 0, 1), cdb10(opWriteVerify10, 0x02, 1, 1),
		cdb12(0xae, 0x02, 2, 1), cdb16(0x8e, 0, 3, 1), cdb16(0x8e, 0x02, 4, 1),
	} {
		wantSense(t, fmt.Sprintf("WRITE AND VERIFY %#x flags %#x", c[0], c[1]), run(l, c, block), goodStatus)
		m.mu.Lock()
		unflushed := m.unflushed
		m.mu.Unlock()
		if unflushed != 0 {
			t.Errorf("WRITE AND VERIFY %#x flags %#x: got %d writes not flushed at completion, want 0", c[0], c[1], unflushed)
		}
	}
}

// TestSynchronizeCache flushes the backend, for a range or the whole unit.
func TestSynchronizeCache(t *testing.T) {
	l, m := newTestLU(t)
	wantSense(t, "sync10", run(l, cdb10(opSync10, 0, 0, 0), nil), goodStatus)
	wantSense(t, "sync16 IMMED", run(l, cdb16(opSync16, 0x02, 10, 20), nil), goodStatus)
	if m.flushes != 2 {
		t.Fatalf("got %d flushes, want 2", m.flushes)
	}
}

// TestShortDataOut: a write whose data-out is shorter than its CDB says
// (iSCSI's expected length under the CDB's) writes what came, even part of
// a block, and leaves the rest alone; a longer one writes only the CDB's
// blocks.
func TestShortDataOut(t *testing.T) {
	l, m := newTestLU(t)
	old := pattern(2*LogicalBlockSize, 1)
	copy(m.data, old)
	wantSense(t, "no data", run(l, cdb10(opWrite10, 0, 0, 1), nil), goodStatus)
	short := pattern(200, 3)
	wantSense(t, "200 bytes of 2 blocks", run(l, cdb10(opWrite10, 0, 0, 2), short), goodStatus)
	if !bytes.Equal(m.data[:200], short) || !bytes.Equal(m.data[200:1024], old[200:]) {
		t.Fatalf("short write: want the 200 bytes sent written and the rest of the 2 blocks kept")
	}
	long := pattern(3*LogicalBlockSize, 4)
	wantSense(t, "long", run(l, cdb10(opWrite10, 0, 0, 1), long), goodStatus)
	if !bytes.Equal(m.data[:LogicalBlockSize], long[:LogicalBlockSize]) || !bytes.Equal(m.data[512:1024], old[512:]) || !allZero(m.data[1024:3*512]) {
		t.Fatalf("a long data-out wrote past the CDB's one block")
	}
	// WRITE AND VERIFY compares what it wrote.
	wantSense(t, "write and verify short", run(l, cdb10(opWriteVerify10, 0x02, 4, 2), short), goodStatus)
	if !bytes.Equal(m.data[4*512:4*512+200], short) {
		t.Fatalf("short WRITE AND VERIFY did not write")
	}
}

// TestAllocLenCuts: DataIn is cut to the transport's expected length and
// Length still says what the command would have sent (the residual).
func TestAllocLenCuts(t *testing.T) {
	l, _ := newTestLU(t)
	for _, alloc := range []int{0, 200, 512, 10000} {
		res := l.Execute(context.Background(), Command{CDB: cdb10(opRead10, 0, 0, 1), AllocLen: alloc})
		wantSense(t, "read", res, goodStatus)
		if len(res.DataIn) != min(alloc, 512) || res.Length != 512 {
			t.Errorf("AllocLen %d: got %d bytes, Length %d; want %d, 512", alloc, len(res.DataIn), res.Length, min(alloc, 512))
		}
	}
}

// TestReservedBitsRefused: a bit outside a command's usage data (here
// RDPROTECT/WRPROTECT, which the unit does not support) is INVALID FIELD
// IN CDB with a field pointer to the byte and its highest bad bit.
func TestReservedBitsRefused(t *testing.T) {
	l, m := newTestLU(t)
	for prot := byte(1); prot < 8; prot++ {
		res := run(l, cdb10(opRead10, prot<<5, 0, 1), nil)
		wantSense(t, "RDPROTECT", res, invalidField)
		inCDB, at, bit := fieldPointer(t, res)
		if !inCDB || at != 1 || bit != highBit(prot<<5) {
			t.Errorf("RDPROTECT %d: pointer cdb=%v byte %d bit %d, want cdb byte 1 bit %d", prot, inCDB, at, bit, highBit(prot<<5))
		}
		wantSense(t, "WRPROTECT", run(l, cdb16(opWrite16, prot<<5, 0, 1), make([]byte, 512)), invalidField)
	}
	c := cdb10(opRead10, 0, 0, 1)
	c[9] = 0x04 // NACA
	wantSense(t, "NACA", run(l, c, nil), invalidField)
	if m.writes != 0 {
		t.Fatalf("a refused WRITE reached the backend")
	}
}

func highBit(b byte) int {
	n := -1
	for ; b != 0; b >>= 1 {
		n++
	}
	return n
}

// TestUnknownOpcode is INVALID COMMAND OPERATION CODE, and a known
// opcode with an unknown service action INVALID FIELD IN CDB.
func TestUnknownOpcode(t *testing.T) {
	l, _ := newTestLU(t)
	for _, op := range []byte{0x04, 0x48, 0x5e, 0x7f, 0x83, 0xc0, 0xff} {
		wantSense(t, fmt.Sprintf("opcode %#x", op), run(l, []byte{op, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil), illegalOpcode)
	}
	wantSense(t, "SERVICE ACTION IN SA 0x11", run(l, []byte{0x9e, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}, nil), invalidField)
	wantSense(t, "short CDB", run(l, []byte{opRead10, 0, 0}, nil), invalidField)
	wantSense(t, "empty CDB", run(l, nil, nil), illegalOpcode)
}

// writeCase is a command that changes the medium, with valid data-out.
type writeCase struct {
	name string
	cdb  []byte
	out  []byte
}

// writeCases is one valid CDB of every command that changes the medium.
func writeCases() []writeCase {
	block := make([]byte, LogicalBlockSize)
	unmapList := unmapParams([2]uint64{0, 1})
	return []writeCase{
		{"WRITE(6)", cdb6(opWrite6, 0, 1), block},
		{"WRITE(10)", cdb10(opWrite10, 0, 0, 1), block},
		{"WRITE(12)", cdb12(opWrite12, 0, 0, 1), block},
		{"WRITE(16)", cdb16(opWrite16, 0, 0, 1), block},
		{"WRITE AND VERIFY(10)", cdb10(opWriteVerify10, 0x02, 0, 1), block},
		{"WRITE AND VERIFY(12)", cdb12(0xae, 0x02, 0, 1), block},
		{"WRITE AND VERIFY(16)", cdb16(0x8e, 0x02, 0, 1), block},
		{"WRITE SAME(10)", cdb10(opWriteSame10, 0, 0, 1), block},
		{"WRITE SAME(10) UNMAP no data", cdb10(opWriteSame10, 0x08, 0, 1), nil},
		{"WRITE SAME(16)", cdb16(opWriteSame16, 0, 0, 1), block},
		{"UNMAP", unmapCDB(len(unmapList)), unmapList},
		{"COMPARE AND WRITE", cawCDB(0, 1), make([]byte, 2*LogicalBlockSize)},
		{"ORWRITE", cdb16(opORWrite, 0, 0, 1), block},
	}
}

// TestReadOnly: every write form is DATA PROTECT, WRITE PROTECTED on a
// read-only unit, before its data is looked at; reads still work.
func TestReadOnly(t *testing.T) {
	m := newMem(testSize, testBlockSize)
	m.readOnly = true
	l := NewLU(m, LUInfo{})
	for _, c := range writeCases() {
		wantSense(t, c.name, run(l, c.cdb, c.out), writeProtected)
	}
	wantSense(t, "READ", run(l, cdb10(opRead10, 0, 0, 1), nil), goodStatus)
}

// TestPreflightRefusesWrites: on a read-only unit Preflight answers every
// command that changes the medium, without its data and without touching
// the backend, with what Execute answers (a CDB fault first, then DATA
// PROTECT), so that a transport need not ask for data it would throw
// away. Other commands, and every command of a writable unit, go on. The
// cases cover every command the table marks as writing.
func TestPreflightRefusesWrites(t *testing.T) {
	m := newMem(testSize, testBlockSize)
	m.readOnly = true
	ro := NewLU(m, LUInfo{})
	rw, _ := newTestLU(t)
	ctx := context.Background()
	covered := map[byte]bool{}
	for _, c := range writeCases() {
		covered[c.cdb[0]] = true
		r, refused := ro.Preflight(ctx, c.cdb)
		if !refused {
			t.Errorf("%s on a read-only unit: got no refusal, want DATA PROTECT", c.name)
			continue
		}
		wantSense(t, c.name, r, writeProtected)
		if _, refused := rw.Preflight(ctx, c.cdb); refused {
			t.Errorf("%s on a writable unit: got a refusal, want none", c.name)
		}
	}
	r, refused := ro.Preflight(ctx, cdb10(opWrite10, 0, uint32(testSize/LogicalBlockSize), 1))
	if !refused {
		t.Fatal("WRITE past the end on a read-only unit: got no refusal")
	}
	wantSense(t, "WRITE past the end", r, lbaOutOfRange)
	for _, cdb := range [][]byte{cdb10(opRead10, 0, 0, 1), cdb10(0x15, 0, 0, 0), {0x00, 0, 0, 0, 0, 0}} {
		if _, refused := ro.Preflight(ctx, cdb); refused {
			t.Errorf("opcode %#02x on a read-only unit: got a refusal, want none", cdb[0])
		}
	}
	for _, c := range commands.list {
		if c.writes && !covered[c.usage[0]] {
			t.Errorf("%s writes but has no case", c.name)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.writes != 0 || m.flushes != 0 || m.punched != 0 || m.zeroed != 0 {
		t.Fatalf("got %d writes, %d flushes, %d punched, %d zeroed, want none", m.writes, m.flushes, m.punched, m.zeroed)
	}
}

// TestBackendErrors maps backend failures to sense: no space is the
// thin-provisioning write protect, others MEDIUM ERROR.
func TestBackendErrors(t *testing.T) {
	l, m := newTestLU(t)
	block := make([]byte, LogicalBlockSize)
	m.failWith = fmt.Errorf("put block: %w", ErrNoSpace)
	wantSense(t, "write, no space", run(l, cdb10(opWrite10, 0, 0, 1), block), spaceAllocationFailed)
	m.failWith = fmt.Errorf("head: %w", ErrReadOnly)
	wantSense(t, "write, read-only backend", run(l, cdb10(opWrite10, 0, 0, 1), block), writeProtected)
	m.failWith = errors.New("disk on fire")
	wantSense(t, "write, other", run(l, cdb10(opWrite10, 0, 0, 1), block), writeError)
	wantSense(t, "read, other", run(l, cdb10(opRead10, 0, 0, 1), nil), readError)
	wantSense(t, "flush, other", run(l, cdb10(opSync10, 0, 0, 0), nil), writeError)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := l.Execute(ctx, Command{CDB: cdb10(opRead10, 0, 0, 1), AllocLen: 512})
	wantSense(t, "read, cancelled", res, senseCode{keyAbortedCommand, 0, 0})
}

// TestVerify: BYTCHK 0 checks the range only, 1 compares the blocks, 3
// compares each block with one; a difference is MISCOMPARE with the
// offset of the first differing byte in INFORMATION.
func TestVerify(t *testing.T) {
	l, m := newTestLU(t)
	p := pattern(4*LogicalBlockSize, 9)
	copy(m.data[LogicalBlockSize:], p)
	wantSense(t, "BYTCHK 0", run(l, cdb10(opVerify10, 0, 1, 4), nil), goodStatus)
	wantSense(t, "BYTCHK 1 equal", run(l, cdb10(opVerify10, 0x02, 1, 4), p), goodStatus)
	bad := bytes.Clone(p)
	bad[777] ^= 0x58
	res := run(l, cdb16(opVerify16, 0x02, 1, 4), bad)
	wantSense(t, "BYTCHK 1 different", res, miscompareCode)
	if res.Sense[0]&0x80 == 0 || res.Sense[6] != byte(777&0xff) || res.Sense[5] != byte(777>>8) {
		t.Errorf("miscompare sense %x: want VALID and INFORMATION 777", res.Sense)
	}
	wantSense(t, "BYTCHK 2", run(l, cdb10(opVerify10, 0x04, 1, 4), p), invalidField)
	one := pattern(LogicalBlockSize, 1)
	for i := 0; i < 3; i++ {
		copy(m.data[(10+i)*LogicalBlockSize:], one)
	}
	wantSense(t, "BYTCHK 3 equal", run(l, cdb10(opVerify10, 0x06, 10, 3), one), goodStatus)
	wantSense(t, "BYTCHK 3 different", run(l, cdb10(opVerify10, 0x06, 10, 4), one), miscompareCode)
	wantSense(t, "BYTCHK 1 short data", run(l, cdb10(opVerify10, 0x02, 1, 4), p[:512]), invalidFieldIU)
}

// TestWriteAndVerify writes and, with BYTCHK, reads back and compares.
func TestWriteAndVerify(t *testing.T) {
	l, m := newTestLU(t)
	p := pattern(2*LogicalBlockSize, 5)
	wantSense(t, "write and verify", run(l, cdb10(opWriteVerify10, 0x02, 7, 2), p), goodStatus)
	if !bytes.Equal(m.data[7*512:9*512], p) {
		t.Fatal("WRITE AND VERIFY did not write")
	}
}

func cawCDB(lba uint64, n byte) []byte {
	c := cdb16(opCAW, 0, lba, 0)
	c[13] = n
	return c
}

// TestCompareAndWrite writes the second half only when the first half
// matches the blocks.
func TestCompareAndWrite(t *testing.T) {
	l, m := newTestLU(t)
	old := pattern(LogicalBlockSize, 2)
	copy(m.data[3*512:], old)
	neu := pattern(LogicalBlockSize, 200)
	wrong := pattern(LogicalBlockSize, 100)
	res := run(l, cawCDB(3, 1), append(bytes.Clone(wrong), neu...))
	wantSense(t, "compare mismatch", res, miscompareCode)
	if !bytes.Equal(m.data[3*512:4*512], old) {
		t.Fatal("COMPARE AND WRITE wrote after a miscompare")
	}
	wantSense(t, "compare match", run(l, cawCDB(3, 1), append(bytes.Clone(old), neu...)), goodStatus)
	if !bytes.Equal(m.data[3*512:4*512], neu) {
		t.Fatal("COMPARE AND WRITE did not write after a match")
	}
	// Any data-out but exactly two halves of the blocks is refused, even
	// with 0 blocks (what 256 blocks become in the one-byte field).
	wantSense(t, "short data", run(l, cawCDB(3, 1), old), invalidField)
	wantSense(t, "long data", run(l, cawCDB(3, 1), make([]byte, 4*LogicalBlockSize)), invalidField)
	wantSense(t, "0 blocks with data", run(l, cawCDB(0, 0), make([]byte, 512*LogicalBlockSize)), invalidField)
	wantSense(t, "0 blocks", run(l, cawCDB(3, 0), nil), goodStatus)
	// A transport that asked for (or kept) only the CDB's amount says how
	// much the initiator meant to send.
	full := append(bytes.Clone(neu), neu...)
	r := l.Execute(context.Background(), Command{CDB: cawCDB(3, 1), DataOut: full, SentLen: 3 * LogicalBlockSize})
	wantSense(t, "meant to send 3 blocks", r, invalidField)
	r = l.Execute(context.Background(), Command{CDB: cawCDB(3, 0), SentLen: 512 * LogicalBlockSize})
	wantSense(t, "0 blocks, meant to send 512", r, invalidField)
}

// TestORWrite ORs the data-out into the blocks.
func TestORWrite(t *testing.T) {
	l, m := newTestLU(t)
	for i := 0; i < 512; i++ {
		m.data[i] = 0x0f
	}
	p := bytes.Repeat([]byte{0xf0}, 512)
	wantSense(t, "orwrite", run(l, cdb16(opORWrite, 0, 0, 1), p), goodStatus)
	if !bytes.Equal(m.data[:512], bytes.Repeat([]byte{0xff}, 512)) {
		t.Fatal("ORWRITE did not OR the data in")
	}
}

// TestWriteSame: zero data with UNMAP punches, without it zeroes; a
// pattern is written to every block; NDOB means zeros; a count of 0 and a
// data-out other than one block are refused.
func TestWriteSame(t *testing.T) {
	zero := make([]byte, LogicalBlockSize)
	t.Run("unmap zeros", func(t *testing.T) {
		l, m := newTestLU(t)
		copy(m.data, pattern(testSize, 1))
		wantSense(t, "ws10 unmap", run(l, cdb10(opWriteSame10, 0x08, 256, 512), zero), goodStatus)
		if m.punched != 512*512 || m.zeroed != 0 || m.writes != 0 {
			t.Fatalf("punched %d zeroed %d writes %d, want %d punched alone", m.punched, m.zeroed, m.writes, 512*512)
		}
		if !allZero(m.data[256*512:768*512]) || allZero(m.data[768*512:769*512]) || allZero(m.data[255*512:256*512]) {
			t.Fatal("WRITE SAME UNMAP zeroed the wrong range")
		}
	})
	t.Run("zeros without unmap", func(t *testing.T) {
		l, m := newTestLU(t)
		wantSense(t, "ws16", run(l, cdb16(opWriteSame16, 0, 0, 64), zero), goodStatus)
		if m.zeroed != 64*512 || m.punched != 0 || m.writes != 0 {
			t.Fatalf("zeroed %d punched %d writes %d, want %d zeroed alone", m.zeroed, m.punched, m.writes, 64*512)
		}
	})
	t.Run("NDOB", func(t *testing.T) {
		l, m := newTestLU(t)
		wantSense(t, "ws16 ndob unmap", run(l, cdb16(opWriteSame16, 0x09, 0, 128), nil), goodStatus)
		if m.punched != 128*512 {
			t.Fatalf("punched %d, want %d", m.punched, 128*512)
		}
	})
	t.Run("pattern", func(t *testing.T) {
		l, m := newTestLU(t)
		p := pattern(LogicalBlockSize, 77)
		n := uint32(MaxTransferBlocks/8 + 3)
		l2 := NewLU(newMem(int64(n+10)*512, testBlockSize), LUInfo{})
		m2 := l2.b.(*memBackend)
		wantSense(t, "ws16 pattern", run(l2, cdb16(opWriteSame16, 0x08, 5, n), p), goodStatus)
		for i := uint32(0); i < n; i++ {
			if !bytes.Equal(m2.data[(5+i)*512:(6+i)*512], p) {
				t.Fatalf("block %d does not hold the pattern", 5+i)
			}
		}
		if m2.punched != 0 || !allZero(m2.data[:5*512]) || !allZero(m2.data[(5+n)*512:]) {
			t.Fatal("WRITE SAME of a pattern punched or wrote outside its range")
		}
		wantSense(t, "count 0 (WSNZ)", run(l, cdb10(opWriteSame10, 0, 0, 0), p), invalidField)
		wantSense(t, "half a block", run(l, cdb10(opWriteSame10, 0, 0, 1), p[:256]), invalidFieldIU)
		wantSense(t, "two blocks", run(l, cdb10(opWriteSame10, 0, 0, 1), append(bytes.Clone(p), p...)), invalidFieldIU)
		r := l.Execute(context.Background(), Command{CDB: cdb10(opWriteSame10, 0, 0, 1), DataOut: p, SentLen: 2 * LogicalBlockSize})
		wantSense(t, "one block kept of two sent", r, invalidFieldIU)
		wantSense(t, "ANCHOR", run(l, cdb10(opWriteSame10, 0x10|0x08, 0, 1), zero), invalidField)
		wantSense(t, "past end", run(l, cdb16(opWriteSame16, 0, testBlocks, 1), p), lbaOutOfRange)
		wantSense(t, "over max", run(l, cdb16(opWriteSame16, 0, 0, MaxWriteSameBlocks+1), p), invalidField)
		if m.writes != 0 {
			t.Fatal("a refused WRITE SAME wrote")
		}
	})
}

func unmapCDB(n int) []byte {
	c := cdb10(opUnmap, 0, 0, uint16(n))
	return c
}

// unmapParams is an UNMAP parameter list of (lba, count) descriptors.
func unmapParams(descs ...[2]uint64) []byte {
	p := make([]byte, 8+16*len(descs))
	p[0], p[1] = byte((len(p)-2)>>8), byte(len(p)-2)
	p[2], p[3] = byte(16*len(descs)>>8), byte(16*len(descs))
	for i, d := range descs {
		e := p[8+16*i:]
		for b := 0; b < 8; b++ {
			e[b] = byte(d[0] >> (56 - 8*b))
		}
		e[8], e[9], e[10], e[11] = byte(d[1]>>24), byte(d[1]>>16), byte(d[1]>>8), byte(d[1])
	}
	return p
}

// TestUnmap punches every descriptor's blocks, checks all of them before
// punching any, and treats empty lists and 0-block descriptors as no-ops.
func TestUnmap(t *testing.T) {
	l, m := newTestLU(t)
	copy(m.data, pattern(testSize, 1))
	p := unmapParams([2]uint64{0, 1}, [2]uint64{10, 128}, [2]uint64{200, 0})
	wantSense(t, "unmap", run(l, unmapCDB(len(p)), p), goodStatus)
	if m.punched != 129*512 || !allZero(m.data[:512]) || !allZero(m.data[10*512:138*512]) || allZero(m.data[512:1024]) {
		t.Fatalf("punched %d bytes; want blocks 0 and 10-137 (%d bytes) zero and block 1 kept", m.punched, 129*512)
	}
	before := m.punched
	bad := unmapParams([2]uint64{0, 1}, [2]uint64{testBlocks - 1, 2})
	wantSense(t, "one descriptor past end", run(l, unmapCDB(len(bad)), bad), lbaOutOfRange)
	wantSense(t, "no descriptors", run(l, unmapCDB(8), unmapParams()), goodStatus)
	wantSense(t, "no parameter list", run(l, unmapCDB(0), nil), goodStatus)
	wantSense(t, "list under 8 bytes", run(l, unmapCDB(6), make([]byte, 6)), paramListLength)
	wantSense(t, "short data-out", run(l, unmapCDB(24), unmapParams()), invalidFieldIU)
	wantSense(t, "0 blocks at end", run(l, unmapCDB(24), unmapParams([2]uint64{testBlocks, 0})), goodStatus)
	var many [][2]uint64
	for i := 0; i <= MaxUnmapDescriptors; i++ {
		many = append(many, [2]uint64{uint64(i), 1})
	}
	mp := unmapParams(many...)
	wantSense(t, "too many descriptors", run(l, unmapCDB(len(mp)), mp), invalidParam)
	if m.punched != before {
		t.Fatalf("a refused UNMAP punched %d bytes", m.punched-before)
	}
}

// TestConcurrentExecute runs writes and reads of separate ranges at once:
// the unit has no shared per-command state (run with -race).
func TestConcurrentExecute(t *testing.T) {
	l, _ := newTestLU(t)
	done := make(chan error)
	for g := 0; g < 8; g++ {
		go func() {
			p := pattern(4*LogicalBlockSize, byte(g))
			lba := uint32(g * 16)
			var err error
			for i := 0; i < 50 && err == nil; i++ {
				if r := run(l, cdb10(opWrite10, 0, lba, 4), p); r.Status != StatusGood {
					err = fmt.Errorf("write: sense %x", r.Sense)
				} else if r := run(l, cdb10(opRead10, 0, lba, 4), nil); !bytes.Equal(r.DataIn, p) {
					err = fmt.Errorf("goroutine %d read back other data", g)
				}
			}
			done <- err
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// TestUnmapTotalLimit: descriptors adding up to more than MaxUnmapBlocks
// are refused before anything is unmapped.
func TestUnmapTotalLimit(t *testing.T) {
	big := &sizeOnly{size: 1 << 40}
	l := NewLU(big, LUInfo{})
	half := uint64(MaxUnmapBlocks/2 + 1)
	p := unmapParams([2]uint64{0, half}, [2]uint64{1 << 30, half})
	res := run(l, unmapCDB(len(p)), p)
	wantSense(t, "over the total", res, invalidParam)
	if inCDB, at, _ := fieldPointer(t, res); inCDB || at != 8+16+8 {
		t.Errorf("field pointer cdb=%v byte %d, want the second descriptor's count (byte %d)", inCDB, at, 8+16+8)
	}
	if big.punched != 0 {
		t.Fatalf("punched %d bytes", big.punched)
	}
}

// TestReadIntoLentBuffer: a read that fits the transport's buffer lands
// in it; one that does not gets its own.
func TestReadIntoLentBuffer(t *testing.T) {
	l, m := newTestLU(t)
	copy(m.data, pattern(4*LogicalBlockSize, 6))
	buf := make([]byte, 2*LogicalBlockSize)
	r := l.Execute(context.Background(), Command{CDB: cdb10(opRead10, 0, 0, 2), AllocLen: 1024, Buffer: buf})
	if !bytes.Equal(r.DataIn, m.data[:1024]) || &r.DataIn[0] != &buf[0] {
		t.Fatalf("2-block read: want the data, in the lent buffer")
	}
	r = l.Execute(context.Background(), Command{CDB: cdb10(opRead10, 0, 0, 4), AllocLen: 2048, Buffer: buf})
	if !bytes.Equal(r.DataIn, m.data[:2048]) || &r.DataIn[0] == &buf[0] {
		t.Fatalf("4-block read: want the data, in a buffer of its own")
	}
}

// barrierBackend makes every read return only once a second read has
// been made (or a bound passed), so that two compares race as hard as they can.
type barrierBackend struct {
	*memBackend
	arrived chan struct{}
}

func (b barrierBackend) ReadAt(ctx context.Context, p []byte, off int64) error {
	err := b.memBackend.ReadAt(ctx, p, off)
	select {
	case b.arrived <- struct{}{}:
	case <-b.arrived:
	case <-time.After(300 * time.Millisecond):
	}
	return err
}

// Two units over one disk sharing LUInfo.Atomicity (an iSCSI target's
// sessions) run COMPARE AND WRITE one at a time: of two hosts taking the
// same lock block (VMware ATS) exactly one wins. With a lock per unit
// both compares passed (a review found it).
func TestCompareAndWriteAtomicAcrossUnits(t *testing.T) {
	m := newMem(1<<20, 4096)
	old := pattern(LogicalBlockSize, 2)
	copy(m.data[3*512:], old)
	b := barrierBackend{memBackend: m, arrived: make(chan struct{})}
	var lock sync.Mutex
	units := []*LU{NewLU(b, LUInfo{Serial: "s", Atomicity: &lock}), NewLU(b, LUInfo{Serial: "s", Atomicity: &lock})}
	results := make([]Result, 2)
	var wg sync.WaitGroup
	for i, l := range units {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = run(l, cawCDB(3, 1), append(bytes.Clone(old), pattern(LogicalBlockSize, byte(100+i))...))
		}()
	}
	wg.Wait()
	good := 0
	for _, r := range results {
		if r.Status == StatusGood {
			good++
		}
	}
	if good != 1 {
		t.Fatalf("%d of two racing COMPARE AND WRITEs of the same old data succeeded, want exactly one", good)
	}
}
