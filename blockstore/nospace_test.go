package blockstore_test

import (
	"errors"
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

// TestBallastStaysUntilTheIndexNeedsIt: another writer (a disk's overlay,
// another program) fills the file system to the last byte. A refused put
// leaves the ballast in place (released early, its bytes went to the next
// writer and the index later found the device full with nothing to give:
// the torture saw a daemon die so); deletes go on, and the index takes the
// ballast when its log needs room. Once space comes back, the first put
// places the ballast again, so that a second fill finds it there (the
// torture also saw a daemon die at a second fill).
func TestBallastStaysUntilTheIndexNeedsIt(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs; CI runs it as root")
	}
	dir := mountTmpfs(t, "16m")
	o := testOptions()
	o.MinFreeBytes = 2 << 20
	store := filepath.Join(dir, "store")
	d := openDisk(t, store, o)
	defer func() { d.Close() }()
	r := testRand(t)
	// Enough index entries that deleting them all outgrows the index's
	// preallocated log.
	var small []blockstore.Block
	for range 8 {
		bs := make([]blockstore.Block, 1000)
		for i := range bs {
			bs[i] = storetest.NewBlock(r, 64)
		}
		putAll(t, d, bs)
		small = append(small, bs...)
	}
	// Reopened, the index has flushed what the puts logged and starts a
	// fresh preallocated log: nothing in the background needs room when
	// the device fills (a memtable flush that finds it full takes the
	// ballast, as it should, and this test could not tell it from a put).
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = openDisk(t, store, o)
	ballast := filepath.Join(store, "ballast")
	if _, err := os.Stat(ballast); err != nil {
		t.Fatalf("no ballast before the device fills: %v", err)
	}
	filler := filepath.Join(dir, "filler")
	fillToTheLastByte(t, filler)
	if err := d.Put(testCtx(t), storetest.NewBlock(r, 64<<10)); !errors.Is(err, blockstore.ErrNoSpace) {
		t.Fatalf("put on a full device: got %v, want ErrNoSpace", err)
	}
	if _, err := os.Stat(ballast); err != nil {
		t.Fatalf("ballast after a refused put: %v, want it kept for the index", err)
	}
	for i, b := range small {
		if err := d.Delete(testCtx(t), b.CID); err != nil {
			t.Fatalf("delete %d on a full device: %v", i, err)
		}
	}
	if ok, err := d.Has(testCtx(t), small[0].CID); err != nil || ok {
		t.Fatalf("has after the delete: %v, %v; want gone", ok, err)
	}
	if _, err := os.Stat(ballast); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ballast after %d deletes on a full device: %v, want the index to have taken it", len(small), err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	b := storetest.NewBlock(r, 64<<10)
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
