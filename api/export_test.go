package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
)

// encodeExport encodes blocks (offset -> data) of a disk of the given size.
func encodeExport(t testing.TB, size, bs int64, offs []int64, data [][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc, err := NewExportWriter(&buf, size, bs)
	if err != nil {
		t.Fatal(err)
	}
	for i, off := range offs {
		if err := enc.Data(off, data[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Finish(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readAll decodes an export stream into a flat image.
func readAll(r io.Reader) ([]byte, error) {
	er, err := NewExportReader(r)
	if err != nil {
		return nil, err
	}
	return decodeAll(er)
}

// decodeAll decodes the rest of an export stream into a flat image.
func decodeAll(er *ExportReader) ([]byte, error) {
	img := make([]byte, 0, min(er.Size(), 1<<20))
	for {
		rec, err := er.Next()
		if err == io.EOF {
			return img, nil
		}
		if err != nil {
			return nil, err
		}
		if int64(len(img))+rec.Len > 1<<24 {
			return nil, fmt.Errorf("image too large for a test")
		}
		if rec.Kind == RecordData {
			img = append(img, rec.Data...)
		} else {
			img = append(img, make([]byte, rec.Len)...)
		}
	}
}

func TestExportRoundTrip(t *testing.T) {
	const bs = 4096
	a := bytes.Repeat([]byte{1}, bs)
	b := bytes.Repeat([]byte{2}, bs)
	stream := encodeExport(t, 10*bs, bs, []int64{bs, 2 * bs, 7 * bs}, [][]byte{a, b, a})
	got, err := readAll(bytes.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 10*bs)
	copy(want[bs:], a)
	copy(want[2*bs:], b)
	copy(want[7*bs:], a)
	if !bytes.Equal(got, want) {
		t.Fatalf("round trip: got %d bytes, want %d equal bytes", len(got), len(want))
	}
	// Holes cost a few bytes, not their size.
	if empty := encodeExport(t, 1<<40, bs, nil, nil); len(empty) > 64 {
		t.Fatalf("export of an empty 1 TiB disk is %d bytes, want a few", len(empty))
	}
}

func TestExportTruncatedAndFailed(t *testing.T) {
	const bs = 4096
	stream := encodeExport(t, 4*bs, bs, []int64{0}, [][]byte{bytes.Repeat([]byte{9}, bs)})
	for n := 0; n < len(stream); n += 97 {
		if _, err := readAll(bytes.NewReader(stream[:n])); err == nil {
			t.Fatalf("stream cut at %d of %d: no error", n, len(stream))
		}
	}
	if _, err := readAll(bytes.NewReader(stream[:len(stream)-1])); !errors.Is(err, ErrTruncated) {
		t.Fatalf("stream without its last byte: got %v, want ErrTruncated", err)
	}

	var buf bytes.Buffer
	enc, err := NewExportWriter(&buf, 4*bs, bs)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.Fail("read block: not found", CodeNotFound); err != nil {
		t.Fatal(err)
	}
	_, err = readAll(&buf)
	var ae *APIError
	if !errors.As(err, &ae) || !errors.Is(err, ErrNotFound) {
		t.Fatalf("failed stream: got %v, want an APIError matching ErrNotFound", err)
	}
}

func TestExportEncoderRefusesDisorder(t *testing.T) {
	enc, err := NewExportWriter(io.Discard, 8192, 4096)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 4096)
	if err := enc.Data(4096, p); err != nil {
		t.Fatal(err)
	}
	if err := enc.Data(0, p); err == nil {
		t.Fatal("data before the previous record: no error")
	}
	if err := enc.Data(8192, p); err == nil {
		t.Fatal("data past the end: no error")
	}
}

// FuzzExportReader feeds arbitrary bytes to the decoder: it must return
// an error or an image of exactly the announced size, never panic or hang.
func FuzzExportReader(f *testing.F) {
	f.Add(encodeExport(f, 3*4096, 4096, []int64{4096}, [][]byte{bytes.Repeat([]byte{7}, 4096)}))
	f.Add(encodeExport(f, 1<<30, 4096, nil, nil))
	f.Add([]byte("WEFTEXP1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		er, err := NewExportReader(bytes.NewReader(b))
		if err != nil {
			return
		}
		var total int64
		for range 1 << 16 {
			rec, err := er.Next()
			if err == io.EOF {
				if total != er.Size() {
					t.Fatalf("complete stream covers %d bytes, header says %d", total, er.Size())
				}
				return
			}
			if err != nil {
				return
			}
			if rec.Kind == RecordData && int64(len(rec.Data)) != rec.Len {
				t.Fatalf("data record of %d bytes says %d", len(rec.Data), rec.Len)
			}
			total += rec.Len
		}
	})
}
