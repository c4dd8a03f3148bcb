package blockstore

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ipfs/go-cid"
)

// Corrupt flips one byte in the middle of the block's payload in its
// segment file, for tests of corruption handling (the in-memory store has
// the same helper). It returns ErrNotFound (wrapped) if the block is absent
// and an error for an empty block, which has no byte to flip. The store
// keeps working; Get of the block returns ErrCorrupt from then on.
func (d *Disk) Corrupt(c cid.Cid) error {
	if err := d.enter(); err != nil {
		return err
	}
	defer d.exit()
	l, ok, err := d.idx.get(blockKey(c))
	if err != nil {
		return fmt.Errorf("corrupt %s: %w", c, err)
	}
	if !ok {
		return fmt.Errorf("corrupt %s: %w", c, ErrNotFound)
	}
	if l.len == 0 {
		return fmt.Errorf("corrupt %s: empty block", c)
	}
	d.trusted.forget(l)
	f, err := os.OpenFile(filepath.Join(d.segDir, segmentName(l.seg)), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("corrupt %s: %w", c, err)
	}
	defer f.Close()
	off := l.dataOffset() + int64(l.len/2)
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
