package main

import (
	"fmt"
	"github.com/weft-mesh/weft/api"
	"io"
)

// zeros is written for holes: a stream's output (a pipe, a device) cannot
// be sparse.
var zeros = make([]byte, 1<<20)

// writeExport copies an export stream to out, every byte, zeros included.
// (A regular file is written by the daemon itself, sparse: see
// api.Client.ExportFile.)
func writeExport(er *api.ExportReader, out io.Writer, bar *progress) error {
	for {
		rec, err := er.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch rec.Kind {
		case api.RecordData:
			_, err = out.Write(rec.Data)
		case api.RecordHole:
			err = writeZeros(out, rec.Len)
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		bar.add(rec.Len)
	}
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
