package blockstore

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ipfs/go-cid"
)

// crash stops d as a killed process would: no checkpoint raised, no
// segment synced, files and index closed as they are. The caller then
// takes away what the crash could lose.
func crash(t *testing.T, d *Disk) {
	t.Helper()
	close(d.stop)
	<-d.stopped
	d.closeFiles()
	if err := d.idx.close(); err != nil {
		t.Fatalf("close index: %v", err)
	}
}

// loseIndexEntries deletes the index entries of bs from the closed store
// in dir: the entries of a put that were committed without a sync and had
// not reached the disk when the process died.
func loseIndexEntries(t *testing.T, dir string, bs ...Block) {
	t.Helper()
	ix, err := openIndex(dir+"/index", DefaultOptions(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if err := ix.db.Delete(blockKey(b.CID), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	if err := ix.close(); err != nil {
		t.Fatal(err)
	}
}

func randomBlock(r *rand.Rand, n int) Block {
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	return NewBlock(CodecRaw, data)
}

// TestAcknowledgedPutSurvivesLostIndex: a put is acknowledged after the
// fsync of its records alone, so a crash may lose its index entries; Open
// must index those records again, past a hole a concurrent put reserved
// and never wrote, while a record whose payload never reached the disk
// stays garbage.
func TestAcknowledgedPutSurvivesLostIndex(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	d, err := Open(dir, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	before := randomBlock(r, 1000)
	if err := d.Put(ctx, before); err != nil {
		t.Fatal(err)
	}
	// A restart raises the checkpoint past everything before it.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if d, err = Open(dir, DefaultOptions()); err != nil {
		t.Fatal(err)
	}
	acked := []Block{randomBlock(r, 64<<10), randomBlock(r, 4096)}
	if err := d.PutMany(ctx, acked[:1]); err != nil {
		t.Fatal(err)
	}
	// A concurrent put reserved this room and died before writing it.
	d.appendMu.Lock()
	d.active.size += 5000
	d.appendMu.Unlock()
	if err := d.PutMany(ctx, acked[1:]); err != nil {
		t.Fatal(err)
	}
	// A put that wrote its record's header but whose payload never
	// reached the disk: never acknowledged, and must not be indexed.
	torn := randomBlock(r, 2048)
	d.appendMu.Lock()
	off := d.active.size
	d.active.size += recordSize(len(torn.CID.Bytes()), len(torn.Data))
	d.appendMu.Unlock()
	if _, err := d.active.f.WriteAt(appendRecordHead(nil, torn.CID.Bytes(), len(torn.Data)), off); err != nil {
		t.Fatal(err)
	}
	crash(t, d)
	loseIndexEntries(t, dir, acked...)

	d, err = Open(dir, DefaultOptions())
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer d.Close()
	for _, b := range append(acked, before) {
		got, err := d.Get(ctx, b.CID)
		if err != nil {
			t.Fatalf("acknowledged block %s after the crash: %v", b.CID, err)
		}
		if len(got) != len(b.Data) {
			t.Fatalf("block %s: got %d bytes, want %d", b.CID, len(got), len(b.Data))
		}
	}
	if ok, err := d.Has(ctx, torn.CID); err != nil || ok {
		t.Fatalf("Has(torn block) = %v, %v; want false: its payload was never written", ok, err)
	}
	if st := d.Stats(); st.Blocks != 3 {
		t.Fatalf("Stats().Blocks = %d, want 3", st.Blocks)
	}
}

// TestCheckpointFollowsSealedSegments: once a segment is sealed and every
// put to it committed, the checkpoint passes it, so Open reads only the
// segments since; and a clean Close passes them all.
func TestCheckpointFollowsSealedSegments(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 3))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	o := DefaultOptions()
	o.SegmentSize = 256 << 10
	o.MinFreeBytes = 0
	d, err := Open(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	first := d.checkpoint
	for range 20 {
		if err := d.Put(ctx, randomBlock(r, 64<<10)); err != nil {
			t.Fatal(err)
		}
	}
	// The committer raises it after the group that follows the last
	// release of a sealed segment: one more put.
	if err := d.Put(ctx, randomBlock(r, 10)); err != nil {
		t.Fatal(err)
	}
	ck, ok, err := d.idx.loadCheckpoint()
	if err != nil || !ok {
		t.Fatalf("loadCheckpoint: %v, %v", ok, err)
	}
	d.appendMu.Lock()
	active := d.active.id
	d.appendMu.Unlock()
	if ck <= first || ck != active {
		t.Fatalf("checkpoint %d after filling segments from %d; want the active segment %d", ck, first, active)
	}
}

// openCrashable opens a store in dir on a crashable in-memory file system,
// which it returns with the options that use it.
func openCrashable(t *testing.T, dir string) (*vfs.MemFS, Options, *Disk) {
	t.Helper()
	fs := vfs.NewCrashableMem()
	o := DefaultOptions()
	o.MinFreeBytes = 0
	o.FS = fs
	d, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return fs, o, d
}

// sealActive seals d's active segment and starts a new one, as filling it
// would.
func sealActive(t *testing.T, d *Disk) {
	t.Helper()
	d.appendMu.Lock()
	defer d.appendMu.Unlock()
	if err := d.rotateLocked(); err != nil {
		t.Fatal(err)
	}
}

// TestCompactedDeleteSurvivesLostIndexWrites: Delete commits without a
// sync, so Compact must make the deletions durable before it removes a
// segment nothing points to; else a crash brings back an index entry whose
// segment is gone, and the deleted block reads as corrupt.
func TestCompactedDeleteSurvivesLostIndexWrites(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 5))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	fs, o, d := openCrashable(t, dir)
	x := randomBlock(r, 4096)
	if err := d.Put(ctx, x); err != nil {
		t.Fatal(err)
	}
	// A later synced write (a checkpoint raised) makes x's entry durable.
	if err := d.idx.sync(); err != nil {
		t.Fatal(err)
	}
	sealActive(t, d)
	if err := d.Delete(ctx, x.CID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	// Power loss: the index keeps only what was synced.
	o.FS = fs.CrashClone(vfs.CrashCloneCfg{})
	crash(t, d)

	d, err := Open(dir, o)
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer d.Close()
	if ok, err := d.Has(ctx, x.CID); err != nil || ok {
		_, gerr := d.Get(ctx, x.CID)
		t.Fatalf("Has(deleted, compacted block) = %v, %v (Get: %v); want false", ok, err, gerr)
	}
}

// TestRecoveryReplacesEntryOfMissingRecord: an index entry whose segment
// is gone, or whose record does not verify, must not hide an acknowledged
// record of the same block above the checkpoint: Open indexes that record
// instead. (A store compacted before Compact synced its deletions: X
// deleted, its segment removed, X put again, power lost.)
func TestRecoveryReplacesEntryOfMissingRecord(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 7))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	o := DefaultOptions()
	o.MinFreeBytes = 0
	d, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	gone, damaged := randomBlock(r, 4096), randomBlock(r, 8192)
	if err := d.PutMany(ctx, []Block{gone, damaged}); err != nil {
		t.Fatal(err)
	}
	crash(t, d)
	// What the index held before the crash: gone in a removed segment,
	// damaged where its bytes were overwritten since.
	ix, err := openIndex(dir+"/index", o, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l, ok, err := ix.get(blockKey(damaged.CID))
	if err != nil || !ok {
		t.Fatalf("index entry of damaged: %v, %v", ok, err)
	}
	l.off += 1000 // what lies there does not hash to damaged
	stale := map[string]location{
		string(blockKey(gone.CID)):    {seg: 9999, off: 0, len: uint32(len(gone.Data)), gen: 1},
		string(blockKey(damaged.CID)): l,
	}
	for key, l := range stale {
		if err := ix.db.Set([]byte(key), encodeLoc(l), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	if err := ix.close(); err != nil {
		t.Fatal(err)
	}

	d, err = Open(dir, o)
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer d.Close()
	for _, b := range []Block{gone, damaged} {
		got, err := d.Get(ctx, b.CID)
		if err != nil {
			t.Fatalf("acknowledged block %s after the crash: %v", b.CID, err)
		}
		if len(got) != len(b.Data) {
			t.Fatalf("block %s: got %d bytes, want %d", b.CID, len(got), len(b.Data))
		}
	}
}

// TestTornPutHidesNoRecord: a put died with part of its payload on disk
// but not its header; that payload (guest data) holds a record-like header
// whose CRC checks out and whose length covers the acknowledged records
// after it. Open must not skip them on that length's word.
func TestTornPutHidesNoRecord(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	d, err := Open(dir, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	// The torn put reserved room for 8 KiB; only its second page reached
	// the disk, and it holds a header that claims 100 KiB.
	d.appendMu.Lock()
	tornOff := d.active.size
	d.active.size += recordSize(36, 8192)
	d.appendMu.Unlock()
	fake := randomBlock(r, 100<<10)
	if _, err := d.active.f.WriteAt(appendRecordHead(nil, fake.CID.Bytes(), len(fake.Data)), tornOff+4096); err != nil {
		t.Fatal(err)
	}
	acked := []Block{randomBlock(r, 4096), randomBlock(r, 64<<10), randomBlock(r, 64<<10)}
	for _, b := range acked {
		if err := d.Put(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	crash(t, d)
	loseIndexEntries(t, dir, acked...)

	d, err = Open(dir, DefaultOptions())
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer d.Close()
	for i, b := range acked {
		if _, err := d.Get(ctx, b.CID); err != nil {
			t.Errorf("acknowledged block %d after the crash: %v", i, err)
		}
	}
	if ok, err := d.Has(ctx, fake.CID); err != nil || ok {
		t.Fatalf("Has(fake block) = %v, %v; want false", ok, err)
	}
}

// FuzzRecoverSegment scans a segment of guest-like bytes around one
// acknowledged record, verifying records as recovery does: whatever the
// bytes before and after it (torn puts, holes, record-like headers with
// any length), the scan finds that record, reads each byte of the
// segment about once, and does not panic.
func FuzzRecoverSegment(f *testing.F) {
	f.Add([]byte{}, []byte{})
	f.Add(bytes.Repeat([]byte(recordMagic), 64), bytes.Repeat([]byte(recordMagic), 64))
	f.Fuzz(func(t *testing.T, before, after []byte) {
		b := NewBlock(CodecRaw, []byte("an acknowledged block"))
		seg := appendRecord(slices.Clone(before), b.CID.Bytes(), b.Data)
		seg = append(seg, after...)
		size := int64(len(seg))
		rc := &readCounter{r: bytes.NewReader(seg), budget: 3*size + recordHeaderSize}
		found := false
		err := scanRecords(rc, size, func(off int64, cidBytes []byte, dataLen int) (bool, error) {
			if off < 0 || off+recordSize(len(cidBytes), dataLen) > size {
				t.Fatalf("record at %d of %d bytes past the segment's %d", off, dataLen, size)
			}
			c, err := cid.Cast(cidBytes)
			if err != nil || CheckCID(c) != nil || dataLen > MaxBlockSize {
				return false, nil
			}
			data := seg[off+recordHeaderSize+int64(len(cidBytes)):][:dataLen]
			if Verify(c, data) != nil {
				return false, nil
			}
			found = found || c.Equals(b.CID)
			return true, nil
		})
		if err != nil || !found {
			t.Fatalf("scan: found the acknowledged record %v, err %v, after reading %d of %d bytes", found, err, rc.read, size)
		}
	})
}

// TestRecoverySyncsWhatItIndexes: a put that died between its write and
// its fsync leaves a whole record in the page cache, which the next Open
// indexes. It must sync the record before its index entry is durable, or a
// power loss after that Open leaves an entry naming bytes that are gone: a
// block that reads as corrupt. (Found by TestPowerLossFaults: an fsync that
// failed with EIO, a reopen, a power loss.)
func TestRecoverySyncsWhatItIndexes(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	dir := "/store"
	fs, o, d := openCrashable(t, dir)
	x := randomBlock(r, 4096)
	// The put's write, and no fsync: the process dies here.
	d.appendMu.Lock()
	s := d.active
	if _, err := writeRecords(s, s.size, [][]byte{x.CID.Bytes()}, func(int) []byte { return x.Data }, 0, 1); err != nil {
		t.Fatal(err)
	}
	d.appendMu.Unlock()
	crash(t, d)

	d, err := Open(dir, o)
	if err != nil {
		t.Fatalf("reopen after the process died: %v", err)
	}
	if ok, err := d.Has(ctx, x.CID); err != nil || !ok {
		t.Fatalf("Has(record left by a dead put) = %v, %v; want true (recovered)", ok, err)
	}
	// Power loss: only what was synced survives.
	o.FS = fs.CrashClone(vfs.CrashCloneCfg{})
	crash(t, d)
	d, err = Open(dir, o)
	if err != nil {
		t.Fatalf("reopen after power loss: %v", err)
	}
	defer d.Close()
	if _, err := d.Get(ctx, x.CID); err != nil && !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(recovered block) after power loss: %v; want the block or ErrNotFound, never corrupt", err)
	}
}
