package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

// ImportFileRequest asks the daemon to import a file it reads itself. The
// CLI uses it for regular files: it saves copying every byte through the
// socket. Only clients that can open the socket (the daemon's own user and
// root, mode 0600) can ask, so it reads nothing they could not.
type ImportFileRequest struct {
	Path      string `json:"path"`
	BlockSize int64  `json:"block_size,omitempty"`
	Replicas  int    `json:"replicas,omitempty"`
}

// ImportProgress is one line of the newline-delimited JSON stream that
// answers an ImportFileRequest: progress lines with Bytes, then one final
// line with Disk or Error.
type ImportProgress struct {
	Bytes int64            `json:"bytes"`
	Disk  *volume.DiskInfo `json:"disk,omitempty"`
	Error string           `json:"error,omitempty"`
	Code  string           `json:"code,omitempty"`
}

// codeFileAccess answers an ImportFileRequest for a file the daemon cannot
// open; the client then streams the file itself.
const codeFileAccess = "file_access"

// importProgressEvery is how often progress lines are sent.
const importProgressEvery = 200 * time.Millisecond

func (s *server) handleImportFile(w http.ResponseWriter, r *http.Request) {
	var req ImportFileRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.mustOwn(r.PathValue("name")); err != nil {
		s.fail(w, r, err)
		return
	}
	f, err := os.Open(req.Path)
	if err == nil {
		var fi os.FileInfo
		if fi, err = f.Stat(); err == nil && !fi.Mode().IsRegular() {
			err = fmt.Errorf("%s is not a regular file", req.Path)
		}
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		s.writeError(w, r, fmt.Errorf("import: %w", err), http.StatusBadRequest, codeFileAccess)
		return
	}
	defer f.Close()

	spec := volume.DiskSpec{Name: r.PathValue("name"), BlockSize: req.BlockSize, Replicas: req.Replicas}
	counter := &countingReader{r: f}
	type result struct {
		info volume.DiskInfo
		err  error
	}
	done := make(chan result, 1)
	go func() {
		info, err := s.vols.Import(r.Context(), spec, counter)
		done <- result{info, err}
	}()

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	tick := time.NewTicker(importProgressEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			enc.Encode(ImportProgress{Bytes: counter.n.Load()})
			if flusher != nil {
				flusher.Flush()
			}
		case res := <-done:
			last := ImportProgress{Bytes: counter.n.Load()}
			if res.err != nil {
				_, code := classify(res.err)
				last.Error, last.Code = errorMessage(res.err, code), code
				s.log.Debug("import failed", "disk", spec.Name, "err", res.err)
			} else {
				s.announce(r.Context(), catalog.DiskKey(res.info.Name))
				last.Disk = &res.info
				s.log.Info("disk imported", "disk", res.info.Name, "size", res.info.Size, "used", res.info.UsedBytes)
			}
			enc.Encode(last)
			return
		}
	}
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

// ErrFileAccess is matched (errors.Is) by ImportFile's error when the
// daemon cannot open the file; stream it with Import instead.
var ErrFileAccess = errors.New("daemon cannot read the file")

// ImportFile asks the daemon to import the regular file at path (absolute,
// as the daemon sees it), calling progress with the bytes read so far.
func (c *Client) ImportFile(ctx context.Context, spec volume.DiskSpec, path string, progress func(int64)) (volume.DiskInfo, error) {
	body, err := json.Marshal(ImportFileRequest{Path: path, BlockSize: spec.BlockSize, Replicas: spec.Replicas})
	if err != nil {
		return volume.DiskInfo{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		"http://weft/v1/disks/"+url.PathEscape(spec.Name)+"/import-file", bytes.NewReader(body))
	if err != nil {
		return volume.DiskInfo{}, fmt.Errorf("import %s: %w", spec.Name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return volume.DiskInfo{}, c.transportError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err := readError(resp)
		if apiErr, ok := err.(*APIError); ok && apiErr.Code == codeFileAccess {
			return volume.DiskInfo{}, fmt.Errorf("%w: %s", ErrFileAccess, apiErr.Message)
		}
		return volume.DiskInfo{}, err
	}
	dec := json.NewDecoder(io.LimitReader(resp.Body, 1<<30))
	for {
		var p ImportProgress
		if err := dec.Decode(&p); err != nil {
			return volume.DiskInfo{}, fmt.Errorf("import %s: daemon's answer ended early: %w", spec.Name, err)
		}
		if progress != nil {
			progress(p.Bytes)
		}
		switch {
		case p.Error != "":
			return volume.DiskInfo{}, &APIError{Status: http.StatusOK, Code: p.Code, Message: p.Error}
		case p.Disk != nil:
			return *p.Disk, nil
		}
	}
}
