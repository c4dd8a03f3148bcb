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
// counts its calls.
type hashingStore struct {
	*blockstore.Memory
	sends atomic.Int64
}

func (s *hashingStore) GetToSend(ctx context.Context, c cid.Cid, dst []byte) ([]byte, error) {
	s.sends.Add(1)
	b, err := s.Get(ctx, c)
	return append(dst, b...), err
}

// TestForEachBlockReadsHashedBlocks: an export reads its blocks with the
// store's GetToSend, which does not hash again the blocks this process
// hashed already, and still gets every block right.
func TestForEachBlockReadsHashedBlocks(t *testing.T) {
	store := &hashingStore{Memory: blockstore.NewMemory()}
	m := openTestManager(t, t.TempDir(), store, &fakeClock{})
	ctx := t.Context()
	data := make([]byte, 8*DefaultBlockSize)
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
	if err := v.ForEachBlock(ctx, func(off int64, p []byte) error {
		copy(got[off:], p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("exported bytes differ from the imported ones")
	}
	if n := store.sends.Load(); n != 8 {
		t.Fatalf("GetToSend called %d times, want 8 (one per block)", n)
	}
}
