package scsi_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/weft-mesh/weft/node/scsi"
)

// ramDisk is a Backend in memory.
type ramDisk struct {
	mu   sync.Mutex
	data []byte
}

func (d *ramDisk) ReadAt(_ context.Context, p []byte, off int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	copy(p, d.data[off:])
	return nil
}

func (d *ramDisk) WriteAt(_ context.Context, p []byte, off int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	copy(d.data[off:], p)
	return nil
}

func (d *ramDisk) Zero(_ context.Context, off, n int64, _ bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.data[off : off+n])
	return nil
}

func (d *ramDisk) Flush(context.Context) error { return nil }
func (d *ramDisk) Size() int64                 { return int64(len(d.data)) }
func (d *ramDisk) BlockSize() int64            { return 64 << 10 }
func (d *ramDisk) ReadOnly() bool              { return false }

// A transport's part: how much data-out to ask for, and the residual of
// the answer against the initiator's expected length.
func ExampleLU_Execute() {
	lu := scsi.NewLU(&ramDisk{data: make([]byte, 1<<20)}, scsi.LUInfo{Serial: "example"})
	ctx := context.Background()

	// WRITE(10) of 2 blocks at LBA 8, the initiator expecting to send 1024 bytes.
	write := []byte{0x2a, 0, 0, 0, 0, 8, 0, 0, 2, 0}
	want, _ := scsi.DataOutLen(write, scsi.LogicalBlockSize)
	data := make([]byte, min(want, 1024)) // what the transport gathers (R2T)
	copy(data, "hello, weft")
	r := lu.Execute(ctx, scsi.Command{CDB: write, DataOut: data})
	fmt.Printf("write: status %d, asked for %d bytes\n", r.Status, want)

	// READ(10) of 1 block, the initiator expecting 200 bytes: an overflow.
	read := []byte{0x28, 0, 0, 0, 0, 8, 0, 0, 1, 0}
	r = lu.Execute(ctx, scsi.Command{CDB: read, AllocLen: 200})
	fmt.Printf("read: status %d, %d bytes %q..., residual %d\n", r.Status, len(r.DataIn), r.DataIn[:11], 200-r.Length)

	// READ(10) past the end: CHECK CONDITION with fixed sense.
	r = lu.Execute(ctx, scsi.Command{CDB: []byte{0x28, 0, 0, 0, 0x08, 0, 0, 0, 1, 0}, AllocLen: 512})
	fmt.Printf("past the end: status %d, sense key %#x, asc %#02x\n", r.Status, r.Sense[2], r.Sense[12])
	// Output:
	// write: status 0, asked for 1024 bytes
	// read: status 0, 200 bytes "hello, weft"..., residual -312
	// past the end: status 2, sense key 0x5, asc 0x21
}
