package exchange

import (
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
)

var (
	// ErrBadBlock means a peer sent a block whose bytes do not hash to its
	// CID (a *BadBlockError), or a block that was not asked for: the
	// caller should stop trusting that peer, or, for a *BadBlockError,
	// at least stop asking it for that block.
	ErrBadBlock = errors.New("peer sent a bad block")
	// ErrRemote means the peer answered with an error. The error also
	// matches the blockstore sentinel for its code (ErrNotFound,
	// ErrNoSpace, ErrCorrupt) where there is one.
	ErrRemote = errors.New("remote error")
	// ErrProtocol means the peer sent something that is not a valid
	// response: a malformed or oversized frame, or an answer that does not
	// fit the request.
	ErrProtocol = errors.New("protocol violation")
	// ErrStalled means a round trip's answer brought too few bytes within
	// the caller's stall window (WithStallWindow): the peer took the
	// request and answers too little, or nothing at all.
	ErrStalled = errors.New("peer's answer stalled")
)

// BadBlockError is a block whose bytes do not hash to its CID. It matches
// ErrBadBlock. A peer that sends one may be lying or may have a block that
// rotted on its disk since it stored it: the CID lets the caller stop
// asking that peer for that block while it keeps the peer for others.
type BadBlockError struct {
	CID cid.Cid // what was asked for
	Got cid.Cid // what the bytes hash to
}

func (e *BadBlockError) Error() string {
	return fmt.Sprintf("%v: %s: the data hashes to %s", ErrBadBlock, e.CID, e.Got)
}

// Is makes errors.Is(err, ErrBadBlock) hold.
func (e *BadBlockError) Is(target error) bool { return target == ErrBadBlock }

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
