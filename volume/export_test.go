package volume

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
)

// hashingStore is a Memory store with blockstore.Disk's GetToSend, which
// counts its calls, and those given a buffer to reuse.
type hashingStore struct {
	*blockstore.Memory
	sends, reused atomic.Int64
}

func (s *hashingStore) GetToSend(ctx context.Context, c cid.Cid, dst []byte) ([]byte, error) {
	s.sends.Add(1)
	if cap(dst) > 0 {
		s.reused.Add(1)
	}
	b, err := s.Get(ctx, c)
	return append(dst, b...), err
}

// TestForEachBlockReadsHashedBlocks: an export reads its blocks with the
// store's GetToSend, which does not hash again the blocks this process
// hashed already, into the buffers given back, and still gets every block
// right.
func TestForEachBlockReadsHashedBlocks(t *testing.T) {
	store := &hashingStore{Memory: blockstore.NewMemory()}
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
		t.Fatalf("GetToSend called %d times, want %d (one per block)", n, blocks)
	}
	// The first reads have no buffer given back yet, and the reads ahead
	// may outrun the Puts; the others reuse one.
	if n := store.reused.Load(); n < blocks/4 {
		t.Fatalf("%d of %d reads reused a buffer, want at least %d", n, blocks, blocks/4)
	}
}
