package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/cluster"
	"github.com/weft-mesh/weft/volume"
)

// ErrConflict is matched (errors.Is) by a request the mesh's state does not
// allow now, such as taking a disk whose owner is alive.
var ErrConflict = cluster.ErrConflict

// Error codes carried in error responses next to the HTTP status.
const (
	codeInvalid  = "invalid"
	codeNotFound = "not_found"
	codeExists   = "exists"
	codeReadOnly = "read_only"
	codeConflict = "conflict"
	codeNotOwner = "not_owner"
	codeNoSpace  = "no_space"
	codeCorrupt  = "corrupt"
	codeInternal = "internal"
)

// classify maps an error from the volume manager or the block store to an
// HTTP status and an error code.
func classify(err error) (int, string) {
	switch {
	case errors.Is(err, volume.ErrNotFound), errors.Is(err, blockstore.ErrNotFound):
		return http.StatusNotFound, codeNotFound
	case errors.Is(err, volume.ErrExists):
		return http.StatusConflict, codeExists
	case errors.Is(err, volume.ErrReadOnly):
		return http.StatusConflict, codeReadOnly
	case errors.Is(err, ErrConflict):
		return http.StatusConflict, codeConflict
	case errors.Is(err, ErrNotOwner):
		return http.StatusConflict, codeNotOwner
	case errors.Is(err, volume.ErrInvalid):
		return http.StatusBadRequest, codeInvalid
	case errors.Is(err, blockstore.ErrNoSpace), errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return http.StatusInsufficientStorage, codeNoSpace
	case errors.Is(err, blockstore.ErrCorrupt):
		return http.StatusInternalServerError, codeCorrupt
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, codeInternal
	}
	return http.StatusInternalServerError, codeInternal
}

// kindError is an error that says what is wrong in its own words and
// matches the sentinel kind (errors.Is), so the daemon answers with kind's
// status without appending kind's text ("not found", "already exists") to
// a message that already says it, or that is about something else.
type kindError struct {
	err  error
	kind error
}

// kindf formats an error of the given kind; %w in format wraps as usual.
func kindf(kind error, format string, args ...any) error {
	return &kindError{err: fmt.Errorf(format, args...), kind: kind}
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.err, e.kind} }

// errorMessage is the text sent for err; out-of-space errors always say so
// in the same words, whichever layer hit the full device.
func errorMessage(err error, code string) string {
	msg := err.Error()
	if code == codeNoSpace && !strings.Contains(msg, blockstore.ErrNoSpace.Error()) {
		msg = blockstore.ErrNoSpace.Error() + ": " + msg
	}
	return msg
}

// APIError is an error response from the daemon. It unwraps to the volume or
// blockstore sentinel matching its code, so callers can use errors.Is with
// volume.ErrNotFound, volume.ErrExists, volume.ErrInvalid,
// volume.ErrReadOnly, ErrNotOwner, ErrConflict, blockstore.ErrNoSpace and
// blockstore.ErrCorrupt.
type APIError struct {
	Status  int    // HTTP status
	Code    string // one of the error codes
	Message string // the daemon's message
}

func (e *APIError) Error() string { return e.Message }

// Unwrap returns the sentinel matching the error code, or nil.
func (e *APIError) Unwrap() error {
	switch e.Code {
	case codeNotFound:
		return volume.ErrNotFound
	case codeExists:
		return volume.ErrExists
	case codeReadOnly:
		return volume.ErrReadOnly
	case codeConflict:
		return ErrConflict
	case codeNotOwner:
		return ErrNotOwner
	case codeInvalid:
		return volume.ErrInvalid
	case codeNoSpace:
		return blockstore.ErrNoSpace
	case codeCorrupt:
		return blockstore.ErrCorrupt
	}
	return nil
}

// ErrNoDaemon is matched (errors.Is) by the error the client returns when no
// daemon listens on the home's socket.
var ErrNoDaemon = errors.New("no daemon running")

type noDaemonError struct{ home string }

func (e *noDaemonError) Error() string {
	return fmt.Sprintf("no daemon running at %s (start it with: weft daemon --home %s)", e.home, e.home)
}

func (e *noDaemonError) Is(target error) bool { return target == ErrNoDaemon }
