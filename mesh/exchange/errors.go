package exchange

import (
	"errors"
	"fmt"

	"github.com/weft-mesh/weft/blockstore"
)

var (
	// ErrBadBlock means a peer sent a block whose bytes do not hash to its
	// CID, or a block that was not asked for. The caller should stop
	// trusting that peer.
	ErrBadBlock = errors.New("peer sent a bad block")
	// ErrRemote means the peer answered with an error. The error also
	// matches the blockstore sentinel for its code (ErrNotFound,
	// ErrNoSpace, ErrCorrupt) where there is one.
	ErrRemote = errors.New("remote error")
	// ErrProtocol means the peer sent something that is not a valid
	// response: a malformed or oversized frame, or an answer that does not
	// fit the request.
	ErrProtocol = errors.New("protocol violation")
)

// code is the error class carried by a response. The values are part of
// the wire format.
type code uint8

const (
	codeOK code = iota
	codeNotFound
	codeNoSpace
	codeCorrupt
	codeBadRequest
	codeInternal
	codeLimit // first value that is not a code
)

// codeOf classifies a local error for the wire.
func codeOf(err error) code {
	switch {
	case errors.Is(err, blockstore.ErrNotFound):
		return codeNotFound
	case errors.Is(err, blockstore.ErrNoSpace):
		return codeNoSpace
	case errors.Is(err, blockstore.ErrCorrupt):
		return codeCorrupt
	default:
		return codeInternal
	}
}

// remoteError is an error response turned back into a Go error.
type remoteError struct {
	code    code
	message string
}

func (e *remoteError) Error() string {
	return fmt.Sprintf("remote: %s", e.message)
}

// Unwrap lets errors.Is match both ErrRemote and the blockstore sentinel
// the code stands for.
func (e *remoteError) Unwrap() []error {
	switch e.code {
	case codeNotFound:
		return []error{ErrRemote, blockstore.ErrNotFound}
	case codeNoSpace:
		return []error{ErrRemote, blockstore.ErrNoSpace}
	case codeCorrupt:
		return []error{ErrRemote, blockstore.ErrCorrupt}
	default:
		return []error{ErrRemote}
	}
}
