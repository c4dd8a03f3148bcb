package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
)

// appendingStore is a Memory store with blockstore.Disk's GetAppend, which
// counts its calls, and those given a buffer to reuse.
type appendingStore struct {
	*blockstore.Memory
	sends, reused atomic.Int64
}

func (s *appendingStore) GetAppend(ctx context.Context, c cid.Cid, dst []byte) ([]byte, error) {
	s.sends.Add(1)
	if cap(dst) > 0 {
		s.reused.Add(1)
	}
	b, err := s.Get(ctx, c)
	return append(dst, b...), err
}

// TestForEachBlockReusesBuffers: an export reads its blocks with the
// store's GetAppend into the buffers given back, and still gets every
// block right.
func TestForEachBlockReusesBuffers(t *testing.T) {
	store := &appendingStore{Memory: blockstore.NewMemory()}
	m := openTestManager(t, t.TempDir(), store, &fakeClock{})
	ctx := t.Context()
	const blocks = 64
	data := make([]byte, blocks*DefaultBlockSize)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	if _, err := m.Import(ctx, DiskSpec{Name: "d"}, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	v, err := m.OpenView(ctx, Ref{Disk: "d"})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	got := make([]byte, len(data))
	bufs := NewBlockBuffers(64)
	if err := v.ForEachBlock(ctx, bufs, func(off int64, p []byte) error {
		copy(got[off:], p)
		bufs.Put(p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("exported bytes differ from the imported ones")
	}
	if n := store.sends.Load(); n != blocks {
		t.Fatalf("GetAppend called %d times, want %d (one per block)", n, blocks)
	}
	// The first reads have no buffer given back yet, and the reads ahead
	// may outrun the Puts; the others reuse one.
	if n := store.reused.Load(); n < blocks/4 {
		t.Fatalf("%d of %d reads reused a buffer, want at least %d", n, blocks, blocks/4)
	}
}

// TestForEachBlockCatchesRotAfterWrite: a block this process wrote, whose
// bytes then rot in its segment file, fails the export with ErrCorrupt;
// the export never hands a file bytes it did not hash as it read them
// (trusting the hash taken at write time would write the rot out).
func TestForEachBlockCatchesRotAfterWrite(t *testing.T) {
	dir := t.TempDir()
	opts := blockstore.DefaultOptions()
	opts.MinFreeBytes = 0
	store, err := blockstore.Open(filepath.Join(dir, "blocks"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	m := openTestManager(t, filepath.Join(dir, "volumes"), store, &fakeClock{})
	ctx := t.Context()
	data := make([]byte, 8*DefaultBlockSize)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	if _, err := m.Import(ctx, DiskSpec{Name: "d"}, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	// Rot one byte of the fourth block where it lies in its segment file,
	// behind the store's back, as a failing disk would.
	rotted := false
	segs, _ := filepath.Glob(filepath.Join(dir, "blocks", "segments", "*.seg"))
	for _, p := range segs {
		f, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		block := data[3*DefaultBlockSize : 4*DefaultBlockSize]
		if i := bytes.Index(f, block[:4096]); i >= 0 {
			fh, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fh.WriteAt([]byte{f[i+100] ^ 0xff}, int64(i+100)); err != nil {
				t.Fatal(err)
			}
			fh.Close()
			rotted = true
		}
	}
	if !rotted {
		t.Fatalf("the block's bytes were not found in %d segment files", len(segs))
	}
	v, err := m.OpenView(ctx, Ref{Disk: "d"})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	bufs := NewBlockBuffers(8)
	err = v.ForEachBlock(ctx, bufs, func(off int64, p []byte) error {
		if !bytes.Equal(p, data[off:off+int64(len(p))]) {
			return fmt.Errorf("offset %d: the export was handed bytes that differ from the written ones", off)
		}
		bufs.Put(p)
		return nil
	})
	if !errors.Is(err, blockstore.ErrCorrupt) {
		t.Fatalf("export of a disk with a rotted block: %v, want ErrCorrupt", err)
	}
}
