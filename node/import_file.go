package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

// FileProgress is one line of the newline-delimited JSON stream that
// answers an import or export of a passed file: progress lines with Bytes
// done of Total, then one final line with Disk (import), Export or Error.
type FileProgress struct {
	Bytes  int64            `json:"bytes"`
	Total  int64            `json:"total"`
	Disk   *volume.DiskInfo `json:"disk,omitempty"`
	Export *ExportResult    `json:"export,omitempty"`
	Error  string           `json:"error,omitempty"`
	Code   string           `json:"code,omitempty"`
}

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
	if err := s.mustOwn(spec.Name); err != nil {
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
		return FileProgress{Disk: &info}, nil
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

// ImportFile imports the regular file f, which the daemon reads itself
// from f's current offset to its end (the descriptor is passed over the
// unix socket), calling progress with the bytes read so far and the file's
// size.
func (c *Client) ImportFile(ctx context.Context, spec volume.DiskSpec, f *os.File, progress func(done, total int64)) (volume.DiskInfo, error) {
	last, err := c.fileJob(ctx, f, importURL(spec, "import-file"), progress)
	if err != nil {
		return volume.DiskInfo{}, err
	}
	if last.Disk == nil {
		return volume.DiskInfo{}, fmt.Errorf("import %s: the daemon's answer has no disk", spec.Name)
	}
	return *last.Disk, nil
}

// fileJob posts to u passing f, and reads the FileProgress lines of the
// answer up to the last one.
func (c *Client) fileJob(ctx context.Context, f *os.File, u string, progress func(done, total int64)) (FileProgress, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return FileProgress{}, fmt.Errorf("%s: %w", u, err)
	}
	hc := c.passing(f)
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return FileProgress{}, c.transportError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return FileProgress{}, readError(resp)
	}
	dec := json.NewDecoder(io.LimitReader(resp.Body, 1<<30))
	for {
		var p FileProgress
		if err := dec.Decode(&p); err != nil {
			return FileProgress{}, fmt.Errorf("%s: the daemon's answer ended early: %w", req.URL.Path, err)
		}
		if progress != nil {
			progress(p.Bytes, p.Total)
		}
		switch {
		case p.Error != "":
			return FileProgress{}, &APIError{Status: http.StatusOK, Code: p.Code, Message: p.Error}
		case p.Disk != nil, p.Export != nil:
			return p, nil
		}
	}
}
