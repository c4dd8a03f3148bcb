package blockstore_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ipfs/go-cid"
	"golang.org/x/sys/unix"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/blockstore/storetest"
)

// TestSweepOnAFullDevice: garbage collection is how a full node gets its
// space back, so a sweep must free space on a device that has less than
// MinFreeBytes free, or none at all: dead segments go before any copying,
// compaction may use the floor, and the garbage of the active segment (all
// of a store smaller than one segment) is freed too.
func TestSweepOnAFullDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs; CI runs it as root")
	}
	const block = 64 << 10
	for _, tc := range []struct {
		name    string
		segment int64
		keep    func(i int) bool // which of the blocks stay live
		leave   int64            // bytes the filler leaves free
	}{
		// One segment: everything is in the active one.
		{"active segment below the floor", 64 << 20, func(i int) bool { return i%16 == 0 }, 3 << 20},
		// Four blocks a segment: the first 32 segments keep one block
		// each (2 MiB to copy, more than the ballast gives back), the
		// other 64 are dead.
		{"dead segments on a device full to the last byte", 4 * (block + 128), func(i int) bool { return i < 128 && i%4 == 0 }, 0},
		// Three 8 MiB segments and the active one, each a quarter live:
		// 6 MiB to copy with 3 MiB free, room for one segment's live
		// records at a time (torture seed 21: rewritten together, none
		// was, and the node stayed full).
		{"partly live segments with room for one at a time", 8 << 20, func(i int) bool { return i%4 == 0 }, 3 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := mountTmpfs(t, "48m")
			o := testOptions()
			o.SegmentSize = tc.segment
			o.MinFreeBytes = 4 << 20
			d := openDisk(t, filepath.Join(dir, "store"), o)
			defer d.Close()
			rng := testRand(t)
			var keep []blockstore.Block
			kept := make(map[cid.Cid]bool)
			for i := range 384 {
				b := storetest.NewBlock(rng, block)
				if err := d.Put(testCtx(t), b); err != nil {
					t.Fatalf("put %d: %v", i, err)
				}
				if tc.keep(i) {
					keep = append(keep, b)
					kept[b.CID] = true
				}
			}
			filler := filepath.Join(dir, "filler")
			if tc.leave == 0 {
				fillToTheLastByte(t, filler)
			} else {
				fillLeaving(t, filler, tc.leave)
			}
			before := freeIn(t, dir)
			st, err := d.Sweep(testCtx(t), d.BeginGC(), func(c cid.Cid) bool { return kept[c] })
			if err != nil {
				t.Fatalf("Sweep on a full device: %v", err)
			}
			after := freeIn(t, dir)
			t.Logf("swept %d blocks, reclaimed %d bytes; free %d -> %d", st.Blocks, st.Reclaimed, before, after)
			if want := int64(384-len(keep)) * block / 2; st.Reclaimed < want || after-before < want {
				t.Fatalf("Sweep reclaimed %d bytes, free %d -> %d; want at least %d back", st.Reclaimed, before, after, want)
			}
			checkBlocks(t, d, keep)
		})
	}
}

// fillLeaving grows path until the file system has leave bytes free.
func fillLeaving(t *testing.T, path string, leave int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if free := freeIn(t, filepath.Dir(path)); free > leave {
		if err := unix.Fallocate(int(f.Fd()), 0, 0, free-leave); err != nil {
			t.Fatalf("fill %s: %v", path, err)
		}
	}
}

func freeIn(t *testing.T, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}
