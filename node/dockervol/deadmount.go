package dockervol

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// isDeadMount reports whether err comes from a FUSE mount whose server is
// gone.
func isDeadMount(err error) bool { return errors.Is(err, unix.ENOTCONN) }

// detachDead lazily unmounts a FUSE mount whose server is gone.
func detachDead(dir string) error {
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the dead FUSE mount %s: %w", dir, err)
	}
	return nil
}
