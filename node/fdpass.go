package node

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/weft-mesh/weft/volume"
)

// Files passed over the local API's unix socket.
//
// `disk import` and `disk export` of a regular file pass the daemon the
// file the CLI opened, as SCM_RIGHTS ancillary data on the request's first
// bytes; the daemon then reads or writes the file itself instead of
// copying every byte through the socket. The daemon acts only on a file the
// client could open, with the access the client opened it with: it never
// opens a path on a client's behalf. Over TCP (the dashboard's listener) no
// file can be passed, and a request that needs one is refused.

// fileListener accepts local API connections that can receive passed files.
type fileListener struct{ *net.UnixListener }

func (l fileListener) Accept() (net.Conn, error) {
	c, err := l.AcceptUnix()
	if err != nil {
		return nil, err
	}
	return &fileConn{UnixConn: c}, nil
}

// fileConn is a local API connection that keeps the file a client passed
// with its latest request until a handler takes it or the connection ends.
type fileConn struct {
	*net.UnixConn
	oob [64]byte // reads are serial on a server connection

	mu   sync.Mutex
	file *os.File
}

func (c *fileConn) Read(p []byte) (int, error) {
	n, oobn, _, _, err := c.ReadMsgUnix(p, c.oob[:])
	// recvmsg's -1 comes through on an error (the HTTP server's
	// deadline that aborts its background read): io.Reader wants 0.
	n = max(n, 0)
	if oobn > 0 {
		c.keep(c.oob[:oobn])
	}
	if n == 0 && err == nil && len(p) > 0 {
		err = io.EOF
	}
	return n, err
}

// keep takes the files in a control message: the last one stays (a request
// passes one), any other is closed at once, so a client cannot make the
// daemon hold descriptors.
func (c *fileConn) keep(oob []byte) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	var fds []int
	for _, m := range msgs {
		if got, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, got...)
		}
	}
	if len(fds) == 0 {
		return
	}
	for _, fd := range fds[:len(fds)-1] {
		unix.Close(fd)
	}
	f := os.NewFile(uintptr(fds[len(fds)-1]), "passed file")
	c.mu.Lock()
	old := c.file
	c.file = f
	c.mu.Unlock()
	if old != nil {
		old.Close()
	}
}

// take returns the passed file, now the caller's to close, or nil.
func (c *fileConn) take() *os.File {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.file
	c.file = nil
	return f
}

func (c *fileConn) Close() error {
	if f := c.take(); f != nil {
		f.Close()
	}
	return c.UnixConn.Close()
}

type fileConnKey struct{}

// withFileConn is the local API server's ConnContext: it lets handlers
// reach the connection a request came on.
func withFileConn(ctx context.Context, c net.Conn) context.Context {
	if fc, ok := c.(*fileConn); ok {
		return context.WithValue(ctx, fileConnKey{}, fc)
	}
	return ctx
}

// errNoPassedFile answers a request that needs a passed file and came
// without one.
var errNoPassedFile = fmt.Errorf("no open file was passed with the request (SCM_RIGHTS on the daemon's unix socket): %w", volume.ErrInvalid)

// passedFile returns the file passed with r, which the caller must close.
func passedFile(r *http.Request) (*os.File, error) {
	fc, _ := r.Context().Value(fileConnKey{}).(*fileConn)
	if fc == nil {
		return nil, errNoPassedFile
	}
	f := fc.take()
	if f == nil {
		return nil, errNoPassedFile
	}
	return f, nil
}
