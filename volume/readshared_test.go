package volume

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/weft-mesh/weft/blockstore"
)

// TestReadSharedIsImmutable checks what a zero-copy reply relies on: the
// slices ReadShared returns keep the bytes of the moment they were read,
// however the disk changes afterwards (writes, commits, restores), and a
// later read of the same blocks does not disturb them.
func TestReadSharedIsImmutable(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := openTestManager(t, t.TempDir(), blockstore.NewMemory(), clock)
	t.Cleanup(func() { m.Close() })
	const bs = 4096
	h := createSmallDisk(t, m, bs)
	old := bytes.Repeat([]byte{0xaa}, 4*bs)
	if _, err := h.WriteAt(old, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Commit(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	// Committed blocks come back shared; the unwritten tail reads as
	// zeros.
	parts, err := h.ReadShared(ctx, make([]byte, 6*bs), 0)
	if err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Clone(old), make([]byte, 2*bs)...)
	if got := bytes.Join(parts, nil); !bytes.Equal(got, want) {
		t.Fatalf("ReadShared after commit differs at byte %d", firstDiff(got, want))
	}
	if _, err := h.WriteAt(bytes.Repeat([]byte{0x55}, 6*bs), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Commit(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	again, err := h.ReadShared(ctx, make([]byte, 6*bs), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := bytes.Join(again, nil); !bytes.Equal(got, bytes.Repeat([]byte{0x55}, 6*bs)) {
		t.Fatalf("ReadShared after the rewrite differs at byte %d", firstDiff(got, bytes.Repeat([]byte{0x55}, 6*bs)))
	}
	if got := bytes.Join(parts, nil); !bytes.Equal(got, want) {
		t.Fatalf("slices returned before the rewrite changed: differ at byte %d", firstDiff(got, want))
	}
}
