package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/weft-mesh/weft/blockstore"
)

// fullStore is a store whose puts fail with ErrNoSpace while full is set.
type fullStore struct {
	blockstore.Store
	full atomic.Bool
}

func (s *fullStore) Put(ctx context.Context, b blockstore.Block) error {
	return s.PutMany(ctx, []blockstore.Block{b})
}

func (s *fullStore) PutMany(ctx context.Context, bs []blockstore.Block) error {
	if s.full.Load() {
		return fmt.Errorf("put: %w", blockstore.ErrNoSpace)
	}
	return s.Store.PutMany(ctx, bs)
}

// TestCloseOnAFullStore: a store too full to commit into fails the
// commit, not the shutdown; the flushed writes stay in the overlay and
// read back after reopening, and commit once space is back.
func TestCloseOnAFullStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := &fullStore{Store: blockstore.NewMemory()}
	m := openTestManager(t, dir, store, &fakeClock{})
	if _, err := m.CreateDisk(ctx, DiskSpec{Name: "d", Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	h, err := m.Head("d")
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte{0x5a}, 128<<10)
	if _, err := h.WriteAt(want, 64<<10); err != nil {
		t.Fatal(err)
	}
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	store.full.Store(true)
	if _, err := m.Commit(ctx, "d"); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("commit into a full store: got %v, want ErrNoSpace", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("close with a full store: %v, want nil (the writes stay in the overlay)", err)
	}

	store.full.Store(false)
	m = openTestManager(t, dir, store, &fakeClock{})
	defer m.Close()
	h, err = m.Head("d")
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if _, err := h.ReadAt(got, 64<<10); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after reopening: read %v, equal %v; want the flushed write", err, bytes.Equal(got, want))
	}
	info, err := m.Commit(ctx, "d")
	if err != nil || info.DirtyBytes != 0 {
		t.Fatalf("commit once space is back: %+v, %v; want nothing dirty", info, err)
	}
}
