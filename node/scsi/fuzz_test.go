package scsi

import (
	"context"
	"testing"
)

// strictBackend is a memBackend that records any call outside the unit
// (which the LU's range checks must prevent) and any write to a
// read-only unit.
type strictBackend struct {
	*memBackend
	t *testing.T
}

func (s strictBackend) ReadAt(ctx context.Context, p []byte, off int64) error {
	s.inRange("read", off, int64(len(p)))
	return s.memBackend.ReadAt(ctx, p, off)
}

func (s strictBackend) WriteAt(ctx context.Context, p []byte, off int64) error {
	s.inRange("write", off, int64(len(p)))
	s.writable("write")
	return s.memBackend.WriteAt(ctx, p, off)
}

func (s strictBackend) Zero(ctx context.Context, off, n int64, punch bool) error {
	s.inRange("zero", off, n)
	s.writable("zero")
	return s.memBackend.Zero(ctx, off, n, punch)
}

func (s strictBackend) inRange(op string, off, n int64) {
	if off < 0 || n < 0 || off+n > int64(len(s.data)) {
		s.t.Fatalf("%s %d+%d outside the %d-byte unit", op, off, n, len(s.data))
	}
}

func (s strictBackend) writable(op string) {
	if s.readOnly {
		s.t.Fatalf("%s on a read-only unit", op)
	}
}

// FuzzExecute runs random CDBs with random data against a small unit:
// Execute never panics nor touches the backend outside the unit, a
// read-only unit is never written, and every Result keeps its promises
// (GOOD or CHECK CONDITION, fixed sense exactly with CHECK CONDITION,
// DataIn within AllocLen and Length). DataOutLen never panics either.
func FuzzExecute(f *testing.F) {
	seeds := [][]byte{
		cdb10(opRead10, 0, 0, 1),
		cdb10(opWrite10, 0x08, 3, 2),
		cdb16(opRead16, 0, ^uint64(0), 1),
		cdb16(opWriteSame16, 0x08, 0, 8),
		cdb10(opWriteSame10, 0, 1, 3),
		unmapCDB(24),
		cawCDB(1, 1),
		cdb16(opORWrite, 0, 0, 1),
		cdb10(opVerify10, 0x06, 0, 4),
		inquiryCDB(true, 0xb0, 255),
		modeSense6CDB(false, 0, 0x3f, 0, 255),
		modeSense10CDB(true, false, 1, 0x3f, 512),
		{0x15, 0x10, 0, 0, 24, 0},
		rsocCDB(true, 0, 0, 0, 4096),
		rsocCDB(false, 2, 0x9e, 0x10, 4096),
		cdb16(0x9e, 0x10, 0, 32),
		cdb16(0x9e, 0x12, 0, 24),
		{0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0},
	}
	data := append(unmapParams([2]uint64{0, 8}), make([]byte, 2048)...)
	for i, s := range seeds {
		f.Add(s, data, 4096, i%3 == 0)
	}
	f.Fuzz(func(t *testing.T, cdb, dataOut []byte, allocLen int, readOnly bool) {
		m := newMem(64<<10, 4096)
		m.readOnly = readOnly
		l := NewLU(strictBackend{m, t}, LUInfo{Serial: "fuzz"})
		if n, err := DataOutLen(cdb, LogicalBlockSize); err == nil && n < 0 {
			t.Fatalf("DataOutLen %d", n)
		}
		allocLen %= 1 << 20
		r := l.Execute(context.Background(), Command{CDB: cdb, DataOut: dataOut, AllocLen: allocLen})
		switch r.Status {
		case StatusGood:
			if r.Sense != nil {
				t.Fatalf("GOOD with sense %x", r.Sense)
			}
			if len(r.DataIn) > max(allocLen, 0) || len(r.DataIn) > r.Length {
				t.Fatalf("%d bytes of data-in for AllocLen %d, Length %d", len(r.DataIn), allocLen, r.Length)
			}
		case StatusCheckCondition:
			if len(r.Sense) != fixedSenseLen || r.Sense[0]&0x7f != 0x70 || r.Sense[2]&0x0f == 0 {
				t.Fatalf("CHECK CONDITION with sense %x", r.Sense)
			}
			if r.DataIn != nil || r.Length != 0 {
				t.Fatalf("CHECK CONDITION with data-in %x", r.DataIn)
			}
		default:
			t.Fatalf("status %#x", r.Status)
		}
	})
}
