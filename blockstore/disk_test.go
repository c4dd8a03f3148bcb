package blockstore_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/blockstore/storetest"
)

// testOptions are small enough that tests rotate and compact segments.
func testOptions() blockstore.Options {
	o := blockstore.DefaultOptions()
	o.SegmentSize = 256 << 10
	o.MinFreeBytes = 0
	o.IndexCacheBytes = 1 << 20
	o.IndexMemTableBytes = 256 << 10
	return o
}

func openDisk(t *testing.T, dir string, o blockstore.Options) *blockstore.Disk {
	t.Helper()
	d, err := blockstore.Open(dir, o)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testRand(t *testing.T) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, seed>>1))
}

func putAll(t *testing.T, s blockstore.Store, bs []blockstore.Block) {
	t.Helper()
	if err := s.PutMany(testCtx(t), bs); err != nil {
		t.Fatalf("PutMany: %v", err)
	}
}

func checkBlocks(t *testing.T, s blockstore.Getter, bs []blockstore.Block) {
	t.Helper()
	ctx := testCtx(t)
	for _, b := range bs {
		got, err := s.Get(ctx, b.CID)
		if err != nil {
			t.Fatalf("Get(%s): %v", b.CID, err)
		}
		if !bytes.Equal(got, b.Data) {
			t.Fatalf("Get(%s): got %d bytes that differ, want the %d put", b.CID, len(got), len(b.Data))
		}
	}
}

func TestDiskConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) blockstore.Store {
		return openDisk(t, t.TempDir(), testOptions())
	})
}

func TestDiskOptionsValidate(t *testing.T) {
	if err := blockstore.DefaultOptions().Validate(); err != nil {
		t.Fatalf("DefaultOptions().Validate() = %v, want nil", err)
	}
	o := blockstore.DefaultOptions()
	o.CompactBelow = 2
	if _, err := blockstore.Open(t.TempDir(), o); err == nil {
		t.Fatalf("Open with CompactBelow 2: got nil error")
	}
}

func TestDiskReopen(t *testing.T) {
	dir := t.TempDir()
	r := testRand(t)
	d := openDisk(t, dir, testOptions())
	var bs []blockstore.Block
	for range 40 {
		bs = append(bs, storetest.NewBlock(r, r.IntN(40<<10)))
	}
	putAll(t, d, bs)
	d.BeginGC()
	gen := d.BeginGC()
	if err := d.Delete(testCtx(t), bs[0].CID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	putAll(t, d, bs[1:2]) // refresh to the current generation
	before := d.Stats()
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	d = openDisk(t, dir, testOptions())
	if got := d.Stats(); got != before {
		t.Fatalf("Stats after reopen = %+v, want %+v", got, before)
	}
	checkBlocks(t, d, bs[1:])
	if ok, _ := d.Has(testCtx(t), bs[0].CID); ok {
		t.Fatalf("deleted block %s is back after a clean reopen", bs[0].CID)
	}
	if got := d.BeginGC(); got != gen+1 {
		t.Fatalf("BeginGC after reopen = %d, want %d", got, gen+1)
	}
	// bs[1] was put in generation gen+1, the rest earlier.
	st, err := d.Sweep(testCtx(t), gen, func(c cid.Cid) bool { return false })
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if st.Blocks != int64(len(bs)-2) {
		t.Fatalf("Sweep deleted %d blocks, want %d", st.Blocks, len(bs)-2)
	}
	checkBlocks(t, d, bs[1:2])
}

func TestDiskCorruption(t *testing.T) {
	r := testRand(t)
	d := openDisk(t, t.TempDir(), testOptions())
	var bs []blockstore.Block
	for range 30 {
		bs = append(bs, storetest.NewBlock(r, 1+r.IntN(20<<10)))
	}
	putAll(t, d, bs)
	bad := bs[7]
	if err := storetest.CorruptDisk(d, bad.CID); err != nil {
		t.Fatalf("Corrupt: %v", err)
	}
	if _, err := d.Get(testCtx(t), bad.CID); !errors.Is(err, blockstore.ErrCorrupt) {
		t.Fatalf("Get of a corrupted block: got %v, want ErrCorrupt", err)
	}
	if ok, err := d.Has(testCtx(t), bad.CID); !ok || err != nil {
		t.Fatalf("Has of a corrupted block = %v, %v; want true, nil", ok, err)
	}
	var reported []cid.Cid
	rep, err := blockstore.Scrub(testCtx(t), d, func(c cid.Cid, err error) {
		if !errors.Is(err, blockstore.ErrCorrupt) {
			t.Errorf("Scrub reported %s with %v, want ErrCorrupt", c, err)
		}
		reported = append(reported, c)
	})
	if err != nil {
		t.Fatalf("Scrub: %v", err)
	}
	if rep.Checked != int64(len(bs)) || rep.Corrupt != 1 || len(reported) != 1 || reported[0] != bad.CID {
		t.Fatalf("Scrub = %+v reporting %v; want %d checked, 1 corrupt (%s)", rep, reported, len(bs), bad.CID)
	}
	var want int64
	for _, b := range bs {
		if b.CID != bad.CID {
			want += int64(len(b.Data))
		}
	}
	if rep.Bytes != want {
		t.Fatalf("Scrub bytes = %d, want %d", rep.Bytes, want)
	}
	// Putting the good bytes again over the corrupt copy rewrites it: a put
	// that returns nil leaves the block readable, and the accounting counts
	// it once.
	before := d.Stats()
	if err := d.Put(testCtx(t), bad); err != nil {
		t.Fatalf("Put over a corrupt copy: %v", err)
	}
	checkBlocks(t, d, bs)
	if st := d.Stats(); st.Blocks != before.Blocks || st.Bytes != before.Bytes {
		t.Fatalf("Stats after the rewrite = %+v, want %d blocks of %d bytes as before", st, before.Blocks, before.Bytes)
	}
}

// A put of blocks already stored reads back those this process has not
// verified and rewrites the damaged ones, in a batch with new and intact
// ones; the rewrite survives a reopen, and compaction of the damaged
// copy's garbage keeps every block.
func TestDiskPutOverCorruptCopy(t *testing.T) {
	r := testRand(t)
	dir := t.TempDir()
	d := openDisk(t, dir, testOptions())
	var bs []blockstore.Block
	for range 40 {
		bs = append(bs, storetest.NewBlock(r, 1<<10+r.IntN(20<<10)))
	}
	putAll(t, d, bs[:30])
	for _, b := range bs[3:6] {
		if err := storetest.CorruptDisk(d, b.CID); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened, nothing is trusted: the intact copies are read back too.
	flipOnDisk(t, dir, bs[8].Data)
	d = openDisk(t, dir, testOptions())
	putAll(t, d, bs)
	checkBlocks(t, d, bs)
	var want int64
	for _, b := range bs {
		want += int64(len(b.Data))
	}
	if st := d.Stats(); st.Blocks != int64(len(bs)) || st.Bytes != want {
		t.Fatalf("Stats = %+v, want %d blocks of %d bytes", st, len(bs), want)
	}
	if _, err := d.Compact(testCtx(t)); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = openDisk(t, dir, testOptions())
	checkBlocks(t, d, bs)
	if st := d.Stats(); st.Blocks != int64(len(bs)) || st.Bytes != want {
		t.Fatalf("Stats after reopen = %+v, want %d blocks of %d bytes", st, len(bs), want)
	}
}

func TestMemoryScrub(t *testing.T) {
	r := testRand(t)
	m := blockstore.NewMemory()
	bs := []blockstore.Block{storetest.NewBlock(r, 100), storetest.NewBlock(r, 200)}
	putAll(t, m, bs)
	m.Corrupt(bs[1].CID)
	rep, err := blockstore.Scrub(testCtx(t), m, nil)
	if err != nil || rep != (blockstore.ScrubReport{Checked: 2, Bytes: 100, Corrupt: 1}) {
		t.Fatalf("Scrub = %+v, %v; want 2 checked, 100 bytes, 1 corrupt", rep, err)
	}
}

// Memory, like Disk, replaces a damaged copy with the block put again.
func TestMemoryPutOverCorruptCopy(t *testing.T) {
	r := testRand(t)
	m := blockstore.NewMemory()
	b := storetest.NewBlock(r, 100)
	putAll(t, m, []blockstore.Block{b})
	m.Corrupt(b.CID)
	putAll(t, m, []blockstore.Block{b})
	checkBlocks(t, m, []blockstore.Block{b})
}

func segmentFiles(t *testing.T, dir string) (n int, size int64) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "segments"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		n++
		size += fi.Size()
	}
	return n, size
}

func TestDiskCompaction(t *testing.T) {
	dir := t.TempDir()
	r := testRand(t)
	d := openDisk(t, dir, testOptions())
	var keep, drop []blockstore.Block
	for i := range 64 {
		b := storetest.NewBlock(r, 32<<10)
		putAll(t, d, []blockstore.Block{b})
		if i%4 == 0 {
			keep = append(keep, b)
		} else {
			drop = append(drop, b)
		}
	}
	files, size := segmentFiles(t, dir)
	if files < 5 {
		t.Fatalf("%d segment files after 2 MiB of puts, want several", files)
	}
	if st := d.Stats(); st.DiskBytes != size {
		t.Fatalf("Stats().DiskBytes = %d, want the %d bytes of segment files", st.DiskBytes, size)
	}
	kept := make(map[cid.Cid]bool)
	for _, b := range keep {
		kept[b.CID] = true
	}
	st, err := d.Sweep(testCtx(t), d.BeginGC(), func(c cid.Cid) bool { return kept[c] })
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if st.Blocks != int64(len(drop)) {
		t.Fatalf("Sweep deleted %d blocks, want %d", st.Blocks, len(drop))
	}
	_, after := segmentFiles(t, dir)
	if st.Reclaimed <= 0 || after > size/2 {
		t.Fatalf("Sweep reclaimed %d bytes, segments %d -> %d bytes; want about three quarters back", st.Reclaimed, size, after)
	}
	if got := d.Stats().DiskBytes; got != after {
		t.Fatalf("Stats().DiskBytes = %d after compaction, want %d", got, after)
	}
	if size-after != st.Reclaimed {
		t.Fatalf("Sweep reported %d bytes reclaimed, segments shrank by %d", st.Reclaimed, size-after)
	}
	checkBlocks(t, d, keep)
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	d = openDisk(t, dir, testOptions())
	checkBlocks(t, d, keep)
	if got := d.Stats().Blocks; got != int64(len(keep)) {
		t.Fatalf("Stats().Blocks after reopen = %d, want %d", got, len(keep))
	}
}
