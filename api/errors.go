package api

import (
	"errors"
	"fmt"
)

// Errors an *APIError unwraps to, one per error code, so callers can use
// errors.Is. The daemon's own errors (volume, blockstore) map to the same
// codes on the way out.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrInvalid  = errors.New("invalid argument")
	ErrReadOnly = errors.New("read-only")
	// ErrConflict is a request the mesh's state does not allow now, such
	// as taking a disk whose owner is alive.
	ErrConflict = errors.New("conflict")
	// ErrNotOwner is a write or a change to a disk another node owns.
	ErrNotOwner = errors.New("not the owner of the disk")
	ErrNoSpace  = errors.New("out of space")
	ErrCorrupt  = errors.New("block corrupt")
)

// Error codes carried in error responses next to the HTTP status.
const (
	CodeInvalid  = "invalid"
	CodeNotFound = "not_found"
	CodeExists   = "exists"
	CodeReadOnly = "read_only"
	CodeConflict = "conflict"
	CodeNotOwner = "not_owner"
	CodeNoSpace  = "no_space"
	CodeCorrupt  = "corrupt"
	CodeBusy     = "busy" // an unmount refused because a file in the mount is open
	CodeInternal = "internal"
)

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// APIError is an error response from the daemon. It unwraps to the error
// matching its code (ErrNotFound, ErrExists, ...).
type APIError struct {
	Status  int    // HTTP status
	Code    string // one of the error codes
	Message string // the daemon's message
}

func (e *APIError) Error() string { return e.Message }

// Unwrap returns the error matching the error code, or nil.
func (e *APIError) Unwrap() error {
	switch e.Code {
	case CodeNotFound:
		return ErrNotFound
	case CodeExists:
		return ErrExists
	case CodeReadOnly:
		return ErrReadOnly
	case CodeConflict:
		return ErrConflict
	case CodeNotOwner:
		return ErrNotOwner
	case CodeInvalid:
		return ErrInvalid
	case CodeNoSpace:
		return ErrNoSpace
	case CodeCorrupt:
		return ErrCorrupt
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
