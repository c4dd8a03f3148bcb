package transfer

import (
	"errors"
	"fmt"

	"github.com/weft-mesh/weft/volume"
)

// errCancelled is the error of a transfer stopped by an operator.
var errCancelled = errors.New("transfer cancelled")

// kindError is an error that says what is wrong in its own words and
// matches the sentinel kind (errors.Is), so the daemon answers with kind's
// status without appending kind's text to a message that already says it.
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

// invalidf formats an error of a bad request.
func invalidf(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, volume.ErrInvalid)...)
}
