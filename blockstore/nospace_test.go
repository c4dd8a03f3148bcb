package blockstore_test

import (
	"errors"
	"os"
	"syscall"
	"testing"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/blockstore/storetest"
)

// TestNoSpace fills an 8 MiB tmpfs until Put fails with ErrNoSpace, with
// and without the free-space reserve, and checks that every acknowledged
// block still reads back, before and after a reopen.
func TestNoSpace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs; CI runs it as root")
	}
	for _, tc := range []struct {
		name    string
		reserve int64
	}{
		{"FileSystemFull", 0},
		{"Reserve", 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=8m"); err != nil {
				if errors.Is(err, syscall.EPERM) {
					t.Skipf("cannot mount tmpfs (no CAP_SYS_ADMIN?): %v", err)
				}
				t.Fatalf("mount tmpfs on %s: %v", dir, err)
			}
			t.Cleanup(func() {
				if err := syscall.Unmount(dir, 0); err != nil {
					t.Errorf("unmount %s: %v", dir, err)
				}
			})
			o := testOptions()
			o.MinFreeBytes = tc.reserve
			d := openDisk(t, dir, o)
			r := testRand(t)
			var acked []blockstore.Block
			var err error
			for i := 0; i < 1000; i++ {
				bs := []blockstore.Block{storetest.NewBlock(r, 64<<10), storetest.NewBlock(r, 1+r.IntN(64<<10))}
				if err = d.PutMany(testCtx(t), bs); err != nil {
					break
				}
				acked = append(acked, bs...)
			}
			if !errors.Is(err, blockstore.ErrNoSpace) {
				t.Fatalf("filling 8 MiB: got %v after %d blocks, want ErrNoSpace", err, len(acked))
			}
			t.Logf("ErrNoSpace after %d blocks: %v", len(acked), err)
			checkBlocks(t, d, acked)
			// Still full: still a clean error, still readable.
			if err := d.Put(testCtx(t), storetest.NewBlock(r, 4<<20)); !errors.Is(err, blockstore.ErrNoSpace) {
				t.Fatalf("Put on a full device: got %v, want ErrNoSpace", err)
			}
			checkBlocks(t, d, acked)
			if err := d.Close(); err != nil {
				t.Fatalf("Close on a full device: %v", err)
			}
			d = openDisk(t, dir, o)
			checkBlocks(t, d, acked)
		})
	}
}
