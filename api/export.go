package api

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Limits of the export stream (see the package documentation).
const (
	exportMagic = "WEFTEXP1"
	// MaxExportData is the largest data record: the largest block size.
	MaxExportData = MaxBlockSize
	// MaxExportSize is the largest disk an export stream may describe.
	MaxExportSize = 1 << 60
	maxErrorLen   = 64 << 10
)

// Record kinds of the export stream.
const (
	RecordData byte = 'D'
	RecordHole byte = 'H'
	recordErr  byte = 'X'
	recordEnd  byte = 'E'
)

// Record is one piece of an exported disk: Len bytes at Off, either Data
// or a hole of zeros (Data nil).
type Record struct {
	Kind byte
	Off  int64
	Len  int64
	Data []byte // for RecordData; valid until the next call to Next
}

// ExportWriter writes an export stream (the daemon's half). It fills the gaps between data
// records with hole records and checks that data comes in ascending order.
type ExportWriter struct {
	w    *bufio.Writer
	size int64
	next int64
	hdr  [21]byte
}

func NewExportWriter(w io.Writer, size, blockSize int64) (*ExportWriter, error) {
	e := &ExportWriter{w: bufio.NewWriterSize(w, 1<<20), size: size}
	var h [24]byte
	copy(h[:8], exportMagic)
	binary.BigEndian.PutUint64(h[8:], uint64(size))
	binary.BigEndian.PutUint64(h[16:], uint64(blockSize))
	if _, err := e.w.Write(h[:]); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *ExportWriter) hole(upTo int64) error {
	if upTo <= e.next {
		return nil
	}
	h := e.hdr[:17]
	h[0] = RecordHole
	binary.BigEndian.PutUint64(h[1:], uint64(e.next))
	binary.BigEndian.PutUint64(h[9:], uint64(upTo-e.next))
	e.next = upTo
	_, err := e.w.Write(h)
	return err
}

// data writes one data record at off; everything skipped since the last
// record becomes a hole.
func (e *ExportWriter) Data(off int64, p []byte) error {
	if off < e.next || off+int64(len(p)) > e.size || len(p) == 0 || len(p) > MaxExportData {
		return fmt.Errorf("export: block of %d bytes at %d out of order or range (next %d, size %d)", len(p), off, e.next, e.size)
	}
	if err := e.hole(off); err != nil {
		return err
	}
	h := e.hdr[:13]
	h[0] = RecordData
	binary.BigEndian.PutUint64(h[1:], uint64(off))
	binary.BigEndian.PutUint32(h[9:], uint32(len(p)))
	if _, err := e.w.Write(h); err != nil {
		return err
	}
	if _, err := e.w.Write(p); err != nil {
		return err
	}
	e.next = off + int64(len(p))
	return nil
}

// finish writes the trailing hole and the end record, and flushes.
func (e *ExportWriter) Finish() error {
	if err := e.hole(e.size); err != nil {
		return err
	}
	h := e.hdr[:9]
	h[0] = recordEnd
	binary.BigEndian.PutUint64(h[1:], uint64(e.size))
	if _, err := e.w.Write(h); err != nil {
		return err
	}
	return e.w.Flush()
}

// Fail ends the stream with an error record carrying the daemon's message
// and error code.
func (e *ExportWriter) Fail(message, code string) error {
	b, _ := json.Marshal(ErrorBody{Error: message, Code: code})
	if len(b) > maxErrorLen {
		b, _ = json.Marshal(ErrorBody{Error: "export failed (message too long)", Code: code})
	}
	var h [5]byte
	h[0] = recordErr
	binary.BigEndian.PutUint32(h[1:], uint32(len(b)))
	if _, err := e.w.Write(h[:]); err != nil {
		return err
	}
	if _, err := e.w.Write(b); err != nil {
		return err
	}
	return e.w.Flush()
}

// ErrTruncated means an export stream ended before its end record.
var ErrTruncated = errors.New("export stream truncated")

// ExportReader decodes an export stream. It checks every record against
// the header (contiguous, in range, bounded), so a consumer that writes
// what Next returns writes exactly Size bytes.
type ExportReader struct {
	r         *bufio.Reader
	c         io.Closer
	size      int64
	blockSize int64
	next      int64
	done      bool
	err       error
	buf       []byte
}

// NewExportReader reads the stream's header from r. Close closes r if it
// is an io.Closer.
func NewExportReader(r io.Reader) (*ExportReader, error) {
	d := &ExportReader{r: bufio.NewReaderSize(r, 1<<20)}
	d.c, _ = r.(io.Closer)
	var h [24]byte
	if _, err := io.ReadFull(d.r, h[:]); err != nil {
		return nil, fmt.Errorf("export header: %w", truncated(err))
	}
	if string(h[:8]) != exportMagic {
		return nil, fmt.Errorf("export header: bad magic %q", h[:8])
	}
	size := binary.BigEndian.Uint64(h[8:])
	bs := binary.BigEndian.Uint64(h[16:])
	if size > MaxExportSize {
		return nil, fmt.Errorf("export header: size %d too large", size)
	}
	if bs == 0 || bs > MaxExportData || bs&(bs-1) != 0 {
		return nil, fmt.Errorf("export header: block size %d is not a power of two up to %d", bs, MaxExportData)
	}
	d.size, d.blockSize = int64(size), int64(bs)
	return d, nil
}

// Close closes the underlying reader.
func (d *ExportReader) Close() error {
	if d.c == nil {
		return nil
	}
	return d.c.Close()
}

// Size is the size of the exported disk in bytes.
func (d *ExportReader) Size() int64 { return d.size }

func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return ErrTruncated
	}
	return err
}

// Next returns the next record, io.EOF after the end record, or an error:
// a failure reported by the daemon (an *APIError), ErrTruncated, or a
// malformed stream. After an error, Next keeps returning it.
func (d *ExportReader) Next() (Record, error) {
	if d.err != nil {
		return Record{}, d.err
	}
	rec, err := d.next1()
	if err != nil {
		d.err = err
	}
	return rec, err
}

func (d *ExportReader) next1() (Record, error) {
	if d.done {
		return Record{}, io.EOF
	}
	kind, err := d.r.ReadByte()
	if err != nil {
		return Record{}, truncated(err)
	}
	var h [16]byte
	switch kind {
	case RecordData:
		if _, err := io.ReadFull(d.r, h[:12]); err != nil {
			return Record{}, truncated(err)
		}
		off := int64(binary.BigEndian.Uint64(h[:8]))
		n := int64(binary.BigEndian.Uint32(h[8:12]))
		if err := d.check(off, n, MaxExportData); err != nil {
			return Record{}, err
		}
		if int64(cap(d.buf)) < n {
			d.buf = make([]byte, n)
		}
		p := d.buf[:n]
		if _, err := io.ReadFull(d.r, p); err != nil {
			return Record{}, truncated(err)
		}
		d.next = off + n
		return Record{Kind: RecordData, Off: off, Len: n, Data: p}, nil
	case RecordHole:
		if _, err := io.ReadFull(d.r, h[:16]); err != nil {
			return Record{}, truncated(err)
		}
		off := int64(binary.BigEndian.Uint64(h[:8]))
		n64 := binary.BigEndian.Uint64(h[8:16])
		if n64 > MaxExportSize {
			return Record{}, fmt.Errorf("export: hole of %d bytes too large", n64)
		}
		n := int64(n64)
		if err := d.check(off, n, MaxExportSize); err != nil {
			return Record{}, err
		}
		d.next = off + n
		return Record{Kind: RecordHole, Off: off, Len: n}, nil
	case recordEnd:
		if _, err := io.ReadFull(d.r, h[:8]); err != nil {
			return Record{}, truncated(err)
		}
		if size := int64(binary.BigEndian.Uint64(h[:8])); size != d.size || d.next != d.size {
			return Record{}, fmt.Errorf("export: end record at %d of %d (says %d)", d.next, d.size, size)
		}
		d.done = true
		return Record{}, io.EOF
	case recordErr:
		if _, err := io.ReadFull(d.r, h[:4]); err != nil {
			return Record{}, truncated(err)
		}
		n := binary.BigEndian.Uint32(h[:4])
		if n > maxErrorLen {
			return Record{}, fmt.Errorf("export: error record of %d bytes too large", n)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(d.r, b); err != nil {
			return Record{}, truncated(err)
		}
		var eb ErrorBody
		if err := json.Unmarshal(b, &eb); err != nil || eb.Error == "" {
			return Record{}, fmt.Errorf("export: daemon failed with an unreadable error record")
		}
		return Record{}, &APIError{Code: eb.Code, Message: eb.Error}
	}
	return Record{}, fmt.Errorf("export: unknown record kind %#x at offset %d", kind, d.next)
}

// check validates a record of n bytes at off against the stream so far.
func (d *ExportReader) check(off, n, max int64) error {
	if off != d.next {
		return fmt.Errorf("export: record at %d, want %d", off, d.next)
	}
	if n <= 0 || n > max || n > d.size-off {
		return fmt.Errorf("export: record of %d bytes at %d does not fit a %d-byte disk", n, off, d.size)
	}
	return nil
}
