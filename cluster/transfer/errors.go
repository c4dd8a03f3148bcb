package transfer

import (
	"errors"
	"fmt"

	"github.com/weft-mesh/weft/volume"
)

// errCancelled is the error of a transfer stopped by an operator.
var errCancelled = errors.New("transfer cancelled")

// invalidf formats an error of a bad request.
func invalidf(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, volume.ErrInvalid)...)
}
