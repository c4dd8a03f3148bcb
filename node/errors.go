package node

import (
	"context"
	"errors"
	"github.com/weft-mesh/weft/api"
	"net/http"
	"strings"
	"syscall"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/cluster"
	"github.com/weft-mesh/weft/volume"
)

// ErrInvalid is matched (errors.Is) by the errors of what the CLI calls in
// node directly (Init, Load, Run) when an argument is wrong; the daemon's
// answers match api.ErrInvalid instead.
var ErrInvalid = volume.ErrInvalid

// ErrConflict is matched (errors.Is) by a request the mesh's state does not
// allow now, such as taking a disk whose owner is alive.
var ErrConflict = api.ErrConflict

// Error codes carried in error responses next to the HTTP status.
const (
	codeInvalid  = api.CodeInvalid
	codeNotFound = api.CodeNotFound
	codeExists   = api.CodeExists
	codeReadOnly = api.CodeReadOnly
	codeConflict = api.CodeConflict
	codeNotOwner = api.CodeNotOwner
	codeNoSpace  = api.CodeNoSpace
	codeCorrupt  = api.CodeCorrupt
	codeInternal = api.CodeInternal
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
	case errors.Is(err, ErrConflict), errors.Is(err, cluster.ErrConflict):
		return http.StatusConflict, codeConflict
	case errors.Is(err, ErrNotOwner), errors.Is(err, cluster.ErrNotOwner):
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

// errorMessage is the text sent for err; out-of-space errors always say so
// in the same words, whichever layer hit the full device.
func errorMessage(err error, code string) string {
	msg := err.Error()
	if code == codeNoSpace && !strings.Contains(msg, blockstore.ErrNoSpace.Error()) {
		msg = blockstore.ErrNoSpace.Error() + ": " + msg
	}
	return msg
}

// APIError is api.APIError.
type APIError = api.APIError

// ErrNoDaemon is api.ErrNoDaemon.
var ErrNoDaemon = api.ErrNoDaemon
