package csi

import (
	"context"
	"errors"
	"fmt"

	"github.com/weft-mesh/weft/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// grpcError turns an error of the daemon into the status a CSI caller
// expects, with what was being done in front.
func grpcError(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf(format, args...)
	return status.Errorf(codeOf(err), "%s: %v", what, err)
}

func codeOf(err error) codes.Code {
	var ae *api.APIError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, api.ErrNoDaemon):
		return codes.Unavailable
	case errors.Is(err, api.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, api.ErrExists):
		return codes.AlreadyExists
	case errors.Is(err, api.ErrInvalid):
		return codes.InvalidArgument
	case errors.Is(err, api.ErrNoSpace):
		return codes.ResourceExhausted
	case errors.Is(err, api.ErrNotOwner), errors.Is(err, api.ErrConflict), errors.Is(err, api.ErrReadOnly):
		return codes.FailedPrecondition
	case errors.As(err, &ae) && ae.Code == api.CodeBusy:
		return codes.FailedPrecondition
	}
	return codes.Internal
}

func invalidf(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}
