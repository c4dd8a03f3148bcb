package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"

	"golang.org/x/sys/unix"
)

// The client's half of passing files over the local API's unix socket:
// `disk import` and `disk export` of a regular file pass the daemon the file
// the CLI opened, as SCM_RIGHTS ancillary data on the request's first
// bytes, and the daemon reads or writes it itself (see node/fdpass.go).

// ImportFile imports the regular file f, which the daemon reads itself
// from f's current offset to its end (the descriptor is passed over the
// unix socket), calling progress with the bytes read so far and the file's
// size.
func (c *Client) ImportFile(ctx context.Context, spec DiskSpec, f *os.File, progress func(done, total int64)) (DiskInfo, error) {
	last, err := c.fileJob(ctx, f, importURL(spec, "import-file"), progress)
	if err != nil {
		return DiskInfo{}, err
	}
	if last.Disk == nil {
		return DiskInfo{}, fmt.Errorf("import %s: the daemon's answer has no disk", spec.Name)
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

// ExportFile writes a disk head or replica into the regular file f, which
// the daemon writes itself (the descriptor is passed over the unix socket):
// f is truncated to the disk's size, zero blocks stay holes, and f is
// synced when ExportFile returns. progress gets the bytes done so far and
// the disk's size.
func (c *Client) ExportFile(ctx context.Context, ref Ref, f *os.File, progress func(done, total int64)) (ExportResult, error) {
	last, err := c.fileJob(ctx, f, "http://weft/v1/disks/"+url.PathEscape(ref.String())+"/export-file", progress)
	if err != nil {
		return ExportResult{}, err
	}
	if last.Export == nil {
		return ExportResult{}, fmt.Errorf("export %s: the daemon's answer has no result", ref)
	}
	return *last.Export, nil
}

// passingConn is a client connection that passes a file with the first
// bytes it writes.
type passingConn struct {
	*net.UnixConn
	rights []byte // pending SCM_RIGHTS message, nil once sent
}

func (c *passingConn) Write(p []byte) (int, error) {
	if c.rights == nil || len(p) == 0 {
		return c.UnixConn.Write(p)
	}
	n, _, err := c.WriteMsgUnix(p, c.rights, nil)
	if err != nil {
		return n, err
	}
	c.rights = nil
	if n < len(p) {
		m, err := c.UnixConn.Write(p[n:])
		return n + m, err
	}
	return n, nil
}

// passing returns an HTTP client whose one request passes f to the daemon.
// The caller keeps f open until the request is done.
func (c *Client) passing(f *os.File) *http.Client {
	rights := unix.UnixRights(int(f.Fd()))
	sock := SocketPath(c.home)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "unix", sock)
			if err != nil {
				return nil, err
			}
			return &passingConn{UnixConn: conn.(*net.UnixConn), rights: rights}, nil
		},
		DisableKeepAlives:  true,
		DisableCompression: true,
	}
	return &http.Client{Transport: tr}
}
