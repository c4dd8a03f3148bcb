package blockstore

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// TestScanSegment checks that segments are self-describing: a scan finds
// every record and passes over a torn tail.
func TestScanSegment(t *testing.T) {
	var buf []byte
	var want []Block
	for i := range 5 {
		b := NewBlock(CodecRaw, bytes.Repeat([]byte{byte(i)}, 100*i))
		want = append(want, b)
		buf = appendRecord(buf, b.CID.Bytes(), b.Data)
	}
	buf = appendRecord(buf, want[1].CID.Bytes(), want[1].Data)
	torn := buf[:len(buf)-7]
	var got []int
	err := scanRecords(bytes.NewReader(torn), int64(len(torn)), func(off int64, c []byte, n int) (bool, error) {
		i := len(got)
		if i >= len(want) || !bytes.Equal(c, want[i].CID.Bytes()) || n != len(want[i].Data) {
			t.Errorf("record %d at %d: got cid %x, %d bytes", i, off, c, n)
			return true, nil
		}
		got = append(got, n)
		return true, nil
	})
	if err != nil || len(got) != len(want) {
		t.Fatalf("scan = %d records, %v; want %d records", len(got), err, len(want))
	}
}

// readCounter counts the bytes read through it and fails once they pass
// budget, so a scan that rereads its input stops early.
type readCounter struct {
	r      io.ReaderAt
	read   int64
	budget int64
}

var errReadBudget = errors.New("read budget spent")

func (c *readCounter) ReadAt(p []byte, off int64) (int, error) {
	if c.read += int64(len(p)); c.read > c.budget {
		return 0, errReadBudget
	}
	return c.r.ReadAt(p, off)
}

// TestScanFalseMagicsLinear: a segment full of record magics that are not
// records (guest data can be anything) is scanned reading each byte about
// once, not a fresh window per false magic, which took minutes per MiB.
func TestScanFalseMagicsLinear(t *testing.T) {
	b := NewBlock(CodecRaw, []byte("the one record"))
	seg := append(bytes.Repeat([]byte(recordMagic), 1<<20), 'x')
	seg = appendRecord(seg, b.CID.Bytes(), b.Data)
	seg = append(seg, bytes.Repeat([]byte(recordMagic), 1<<18)...)
	size := int64(len(seg))
	rc := &readCounter{r: bytes.NewReader(seg), budget: 3 * size}
	var found int
	err := scanRecords(rc, size, func(off int64, c []byte, n int) (bool, error) {
		if !bytes.Equal(c, b.CID.Bytes()) || n != len(b.Data) {
			t.Errorf("record at %d: cid %x, %d bytes; want only %s", off, c, n, b.CID)
		}
		found++
		return true, nil
	})
	if err != nil || found != 1 {
		t.Fatalf("scan of %d bytes: %d records, %v after reading %d bytes; want 1 record, at most %d bytes read",
			size, found, err, rc.read, rc.budget)
	}
	t.Logf("read %d bytes for a %d-byte segment", rc.read, size)
}
