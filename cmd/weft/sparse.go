package main

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/weft-mesh/weft/node"
)

// zeros is written for holes where the output cannot be sparse.
var zeros = make([]byte, 1<<20)

// writeExport copies an export stream out. With sparse set (out is a fresh
// regular file) it writes data where the disk has data, leaves holes
// elsewhere and truncates out to the disk's size; otherwise (a pipe, a
// device) out gets every byte, zeros included. It returns the number of
// data bytes written.
func writeExport(er *node.ExportReader, out io.Writer, sparse *os.File, bar *progress) (int64, error) {
	var data int64
	var wb writeback
	for {
		rec, err := er.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return data, err
		}
		switch rec.Kind {
		case node.RecordData:
			if sparse != nil {
				if _, err = sparse.WriteAt(rec.Data, rec.Off); err == nil {
					wb.wrote(sparse, rec.Off, rec.Len)
				}
			} else {
				_, err = out.Write(rec.Data)
			}
			data += rec.Len
		case node.RecordHole:
			if sparse == nil {
				err = writeZeros(out, rec.Len)
			}
		}
		if err != nil {
			return data, fmt.Errorf("write: %w", err)
		}
		bar.add(rec.Len)
	}
	if sparse != nil {
		if err := sparse.Truncate(er.Size()); err != nil {
			return data, fmt.Errorf("write %s: %w", sparse.Name(), err)
		}
		// An export is a copy an operator relies on: durable on return.
		if err := sparse.Sync(); err != nil {
			return data, fmt.Errorf("sync %s: %w", sparse.Name(), err)
		}
	}
	return data, nil
}

// writebackChunk is how much written data accumulates before writeback of
// it is started.
const writebackChunk = 8 << 20

// writeback starts the kernel writing exported data to the device while
// more arrives, so the final fsync has little left to wait for.
type writeback struct{ start, end int64 }

func (w *writeback) wrote(f *os.File, off, n int64) {
	if off != w.end || w.end-w.start >= writebackChunk {
		if w.end > w.start {
			_ = unix.SyncFileRange(int(f.Fd()), w.start, w.end-w.start, unix.SYNC_FILE_RANGE_WRITE)
		}
		w.start = off
	}
	w.end = off + n
}

func writeZeros(w io.Writer, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := w.Write(zeros[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}
