package nbd

import (
	"errors"
	"syscall"
)

// errnoOf maps an Export's error to the errno sent to the client.
func errnoOf(err error) uint32 {
	switch {
	case err == nil:
		return errnoOK
	case errors.Is(err, ErrInvalid):
		return errnoInval
	case errors.Is(err, ErrReadOnly):
		return errnoPerm
	case errors.Is(err, ErrNoSpace), errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EFBIG):
		return errnoNoSpc
	}
	return errnoIO
}
