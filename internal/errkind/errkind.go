// Package errkind makes errors that say what is wrong in their own words
// and still match a sentinel kind (volume.ErrNotFound, cluster.ErrConflict,
// …) with errors.Is, so that the daemon answers with the kind's status and
// code without appending the kind's text ("not found", "conflict") to a
// message that already says it, or that is about something else.
package errkind

import "fmt"

// Errorf formats an error of the given kind; %w in format wraps as usual.
func Errorf(kind error, format string, args ...any) error {
	return &kindError{err: fmt.Errorf(format, args...), kind: kind}
}

type kindError struct {
	err  error
	kind error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.err, e.kind} }
