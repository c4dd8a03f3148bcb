package blockstore_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
			dir := mountTmpfs(t, "8m")
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

// TestBallastGoesWhenOthersFillTheDevice: puts stop at MinFreeBytes, so
// when another writer (a disk's overlay, another program) fills the file
// system to the last byte no segment sees ENOSPC; the index ballast goes
// all the same, when a put is refused for space and before a delete, so
// that the index has room to write.
func TestBallastGoesWhenOthersFillTheDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs; CI runs it as root")
	}
	for _, tc := range []struct {
		name  string
		write func(d *blockstore.Disk, b blockstore.Block) error
	}{
		{"Put", func(d *blockstore.Disk, _ blockstore.Block) error {
			if err := d.Put(testCtx(t), storetest.NewBlock(testRand(t), 64<<10)); !errors.Is(err, blockstore.ErrNoSpace) {
				return fmt.Errorf("put on a full device: got %v, want ErrNoSpace", err)
			}
			return nil
		}},
		{"Delete", func(d *blockstore.Disk, b blockstore.Block) error {
			if err := d.Delete(testCtx(t), b.CID); err != nil {
				return fmt.Errorf("delete on a full device: %w", err)
			}
			if ok, err := d.Has(testCtx(t), b.CID); err != nil || ok {
				return fmt.Errorf("has after the delete: %v, %v; want gone", ok, err)
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := mountTmpfs(t, "16m")
			o := testOptions()
			o.MinFreeBytes = 2 << 20
			store := filepath.Join(dir, "store")
			d := openDisk(t, store, o)
			defer d.Close()
			b := storetest.NewBlock(testRand(t), 64<<10)
			if err := d.Put(testCtx(t), b); err != nil {
				t.Fatal(err)
			}
			ballast := filepath.Join(store, "ballast")
			if _, err := os.Stat(ballast); err != nil {
				t.Fatalf("no ballast before the device fills: %v", err)
			}
			fillToTheLastByte(t, filepath.Join(dir, "filler"))
			if err := tc.write(d, b); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(ballast); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("ballast after a write on a device others filled: %v, want it released", err)
			}
		})
	}
}

// TestBallastReturnsWithTheSpace: a ballast released because others filled
// the device is put back by the first put after space came back, so that a
// second fill finds it there to give to the index (torture found a daemon
// killed by the second fill of its device: the ballast came back only at
// Open).
func TestBallastReturnsWithTheSpace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs; CI runs it as root")
	}
	dir := mountTmpfs(t, "16m")
	o := testOptions()
	o.MinFreeBytes = 2 << 20
	store := filepath.Join(dir, "store")
	d := openDisk(t, store, o)
	defer d.Close()
	ballast := filepath.Join(store, "ballast")
	filler := filepath.Join(dir, "filler")
	fillToTheLastByte(t, filler)
	if err := d.Put(testCtx(t), storetest.NewBlock(testRand(t), 64<<10)); !errors.Is(err, blockstore.ErrNoSpace) {
		t.Fatalf("put on a full device: got %v, want ErrNoSpace", err)
	}
	if _, err := os.Stat(ballast); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ballast on a full device: %v, want it released", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	b := storetest.NewBlock(testRand(t), 64<<10)
	if err := d.Put(testCtx(t), b); err != nil {
		t.Fatalf("put once space came back: %v", err)
	}
	if _, err := os.Stat(ballast); err != nil {
		t.Fatalf("ballast once space came back: %v, want it placed again", err)
	}
	if _, err := d.Get(testCtx(t), b.CID); err != nil {
		t.Fatalf("get: %v", err)
	}
}

// fillToTheLastByte writes path until the file system has no byte left.
func fillToTheLastByte(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, chunk := range []int{1 << 20, 4 << 10} {
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("fill %s: %v", path, err)
				}
				break
			}
		}
	}
}

// mountTmpfs mounts a tmpfs of size on a temporary directory for the
// test, skipping it where mounting is not allowed.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
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
	return dir
}
