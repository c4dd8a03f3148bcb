package node

import (
	"encoding/json"
	"fmt"
	"github.com/weft-mesh/weft/api"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

// FileProgress is api.FileProgress.
type FileProgress = api.FileProgress

// fileProgressEvery is how often progress lines are sent.
const fileProgressEvery = 200 * time.Millisecond

// streamFileJob runs job and answers with FileProgress lines: the count (of
// total) every fileProgressEvery, then job's result or error.
func (s *server) streamFileJob(w http.ResponseWriter, count *atomic.Int64, total int64, job func() (FileProgress, error)) {
	done := make(chan FileProgress, 1)
	go func() {
		last, err := job()
		if err != nil {
			_, code := classify(err)
			last = FileProgress{Error: errorMessage(err, code), Code: code}
		}
		done <- last
	}()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	tick := time.NewTicker(fileProgressEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			enc.Encode(FileProgress{Bytes: count.Load(), Total: total})
			if flusher != nil {
				flusher.Flush()
			}
		case last := <-done:
			last.Bytes, last.Total = count.Load(), total
			enc.Encode(last)
			return
		}
	}
}

// handleImportFile imports the regular file passed with the request (see
// fdpass.go), read by the daemon from where the client's descriptor points.
func (s *server) handleImportFile(w http.ResponseWriter, r *http.Request) {
	f, err := passedFile(r)
	if err != nil {
		s.fail(w, r, fmt.Errorf("import: %w", err))
		return
	}
	defer f.Close()
	spec, err := importSpec(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.mayImport(spec.Name); err != nil {
		s.fail(w, r, err)
		return
	}
	fi, err := mustBeRegular(f)
	if err != nil {
		s.fail(w, r, fmt.Errorf("import: %w", err))
		return
	}
	counter := &countingReader{r: f}
	s.streamFileJob(w, &counter.n, fi.Size(), func() (FileProgress, error) {
		info, err := s.vols.Import(r.Context(), spec, counter)
		if err != nil {
			s.log.Debug("import failed", "disk", spec.Name, "err", err)
			return FileProgress{}, err
		}
		s.announce(r.Context(), catalog.DiskKey(info.Name))
		s.log.Info("disk imported", "disk", info.Name, "size", info.Size, "used", info.UsedBytes)
		d := apiDiskInfo(info)
		return FileProgress{Disk: &d}, nil
	})
}

// mustBeRegular refuses a passed file that is not a regular file: pipes and
// devices go through the streaming requests.
func mustBeRegular(f *os.File) (os.FileInfo, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("the passed file is not a regular file (%s): %w", fi.Mode().Type(), volume.ErrInvalid)
	}
	return fi, nil
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
