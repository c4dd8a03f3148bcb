package volume

import (
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weft-mesh/weft/internal/size"
)

// overlayFloor keeps writes to the overlays off the last minFree bytes of
// the file system, which are the block index's: a full device is fatal to
// it (see blockstore's ballast.go), and the ballast it gets back there is
// only worth anything if the overlays do not take it next. Past the floor
// a write fails with ErrNoSpace, which NBD and FUSE clients see as ENOSPC.
//
// Reading the free space costs a statfs, so writes draw on a budget, read
// again once it is spent: at most half the room above the floor (the
// overlays cannot cross it by themselves) and at most maxBudget, which
// bounds how far past the floor they can go when other writers take the
// room meanwhile.
type overlayFloor struct {
	free    func() (int64, error) // the file system's free bytes now
	minFree int64

	mu     sync.Mutex
	budget int64 // bytes writes may take before the free space is read again
}

// newOverlayFloor returns the floor of minFree bytes on the file system
// holding dir, or nil for 0.
func newOverlayFloor(fsys vfs.FS, dir string, minFree int64) *overlayFloor {
	if minFree == 0 {
		return nil
	}
	return &overlayFloor{minFree: minFree, free: func() (int64, error) {
		du, err := fsys.GetDiskUsage(dir)
		if err != nil {
			return 0, err
		}
		return int64(du.AvailBytes), nil
	}}
}

// maxBudget bounds the budget: a statfs per 4 MiB written costs nothing
// next to the writes, and 4 MiB is well inside any floor worth having.
const maxBudget = 4 << 20

// take takes n bytes for a write, or fails with ErrNoSpace if they would
// leave less than the floor free. A nil floor, or a file system that cannot
// tell its free space (an in-memory one), takes anything.
func (f *overlayFloor) take(n int64) error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.budget >= n {
		f.budget -= n
		return nil
	}
	free, err := f.free()
	if err != nil {
		return nil
	}
	room := free - f.minFree
	if room < n {
		f.budget = 0
		return fmt.Errorf("%w: %s free, %s to write, the last %s are the block index's",
			ErrNoSpace, size.Format(free), size.Format(n), size.Format(f.minFree))
	}
	f.budget = min((room-n)/2, maxBudget)
	return nil
}
