package nbd

import (
	"context"
	"errors"
	"net/netip"
	"os"
)

// Errors an Exports or Export implementation returns (wrapped, checked with
// errors.Is) to choose the protocol's answer.
var (
	// ErrUnknown: no such export. Refused with NBD_REP_ERR_UNKNOWN.
	ErrUnknown = errors.New("unknown export")
	// ErrPolicy: the client may not open the export. Refused with
	// NBD_REP_ERR_POLICY.
	ErrPolicy = errors.New("not allowed")
	// ErrInvalid: a request outside the export. Replied with EINVAL.
	ErrInvalid = errors.New("invalid request")
	// ErrReadOnly: a write to a read-only export. Replied with EPERM.
	ErrReadOnly = errors.New("read-only export")
	// ErrNoSpace: the store is full. Replied with ENOSPC.
	ErrNoSpace = errors.New("no space left")
)

// Exports is what the server serves. Implementations must be safe for
// concurrent use: every connection calls them from its own goroutine.
type Exports interface {
	// List returns the names of the exports the client may open, for
	// NBD_OPT_LIST.
	List(ctx context.Context, client netip.Addr) ([]string, error)
	// Open opens an export for a client. Exports opened under one name
	// must share their state (writes on one are seen by reads and made
	// durable by flushes on the others): the server advertises multi-conn.
	// client is the address of a TCP client and the zero Addr for a
	// client on a unix socket (a local, trusted one). An error wrapping
	// ErrUnknown or ErrPolicy is sent to the client as such; any other
	// error as a server failure.
	Open(ctx context.Context, name string, client netip.Addr) (Export, error)
}

// Export is one open export. The server calls its methods concurrently
// (several requests in flight per connection) and closes it once, when the
// connection ends. Ranges are checked by the server against Size before
// any call. Errors wrapping ErrInvalid, ErrReadOnly or ErrNoSpace become
// EINVAL, EPERM and ENOSPC; others become EIO.
type Export interface {
	ReadAt(ctx context.Context, p []byte, off int64) error
	WriteAt(ctx context.Context, p []byte, off int64) error
	// Zero makes n bytes at off read as zeros. With punch it may
	// deallocate them (TRIM, WRITE_ZEROES); without (NBD_CMD_FLAG_NO_HOLE)
	// it writes zeros.
	Zero(ctx context.Context, off, n int64, punch bool) error
	// Flush makes every write that returned before it durable.
	Flush(ctx context.Context) error
	Size() int64
	// BlockSize is the preferred I/O size: a power of two up to MaxPayload.
	BlockSize() int64
	ReadOnly() bool
	// Description is a human-readable line for NBD_INFO_DESCRIPTION; ""
	// sends none.
	Description() string
	Close() error
}

// FileWriter is an Export that lets the server put a write's payload into
// the file backing the export itself: fill writes the n bytes at off into
// dst at the same offset. The server splices large payloads from the
// client's socket through a pipe into dst, so the bytes are copied once,
// by the kernel, instead of into a buffer and out of it again.
type FileWriter interface {
	WriteFrom(ctx context.Context, off, n int64, fill func(dst *os.File) error) error
}
