package storetest

import (
	"fmt"
	"os"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
)

// CorruptDisk flips one byte in the middle of block c's payload in d's
// segment file, for tests of corruption handling. It fails with
// blockstore.ErrNotFound (wrapped) if the block is absent, and for an empty
// block, which has no byte to flip. The store keeps working; Get of the
// block returns blockstore.ErrCorrupt from then on.
func CorruptDisk(d *blockstore.Disk, c cid.Cid) error {
	loc, err := d.Locate(c)
	if err != nil {
		return fmt.Errorf("corrupt: %w", err)
	}
	if loc.Len == 0 {
		return fmt.Errorf("corrupt %s: empty block", c)
	}
	f, err := os.OpenFile(loc.Path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("corrupt %s: %w", c, err)
	}
	defer f.Close()
	off := loc.Offset + loc.Len/2
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		return fmt.Errorf("corrupt %s: %w", c, err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		return fmt.Errorf("corrupt %s: %w", c, err)
	}
	return nil
}
