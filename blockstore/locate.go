package blockstore

import (
	"fmt"
	"path/filepath"

	"github.com/ipfs/go-cid"
)

// BlockLocation is where a block's payload lies on disk: Len bytes at
// Offset in the segment file Path.
type BlockLocation struct {
	Path   string
	Offset int64
	Len    int64
}

// Locate says where block c's payload lies, for tools that inspect or
// damage the store from outside (storetest.CorruptDisk). Whoever knows
// where the bytes are may change them, so the block stops being trusted as
// written by this process: its next read hashes it. It returns ErrNotFound
// (wrapped) if the block is absent.
func (d *Disk) Locate(c cid.Cid) (BlockLocation, error) {
	if err := d.enter(); err != nil {
		return BlockLocation{}, err
	}
	defer d.exit()
	l, ok, err := d.idx.get(blockKey(c))
	if err != nil {
		return BlockLocation{}, fmt.Errorf("locate %s: %w", c, err)
	}
	if !ok {
		return BlockLocation{}, fmt.Errorf("locate %s: %w", c, ErrNotFound)
	}
	d.trusted.forget(l)
	return BlockLocation{Path: filepath.Join(d.segDir, segmentName(l.seg)), Offset: l.dataOffset(), Len: int64(l.len)}, nil
}
