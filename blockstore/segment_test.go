package blockstore

import (
	"bytes"
	"testing"
)

// TestScanSegment checks that segments are self-describing: a scan finds
// every record and stops cleanly at a torn tail.
func TestScanSegment(t *testing.T) {
	var buf []byte
	var want []Block
	for i := range 5 {
		b := NewBlock(CodecRaw, bytes.Repeat([]byte{byte(i)}, 100*i))
		want = append(want, b)
		buf = appendRecord(buf, b.CID.Bytes(), b.Data)
	}
	whole := int64(len(buf))
	buf = appendRecord(buf, want[1].CID.Bytes(), want[1].Data)
	torn := buf[:len(buf)-7]
	var got []int
	end, err := scanSegment(bytes.NewReader(torn), func(off int64, c []byte, n int) error {
		i := len(got)
		if !bytes.Equal(c, want[i].CID.Bytes()) || n != len(want[i].Data) {
			t.Errorf("record %d at %d: got cid %x, %d bytes; want %s, %d bytes", i, off, c, n, want[i].CID, len(want[i].Data))
		}
		got = append(got, n)
		return nil
	})
	if err != nil || end != whole || len(got) != len(want) {
		t.Fatalf("scan = %d records, end %d, %v; want %d records, end %d", len(got), end, err, len(want), whole)
	}
}
