package volume

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/weft-mesh/weft/blockstore"
)

// TestRemoveDiskKeepingHead checks that a forced removal keeps the head,
// uncommitted writes included, as a replica named removed-<time>, and that
// two removals in the same second get distinct names.
func TestRemoveDiskKeepingHead(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultConfig()
	now := time.Date(2026, 11, 30, 17, 0, 0, 0, time.UTC)
	cfg.Dir, cfg.Store, cfg.CommitInterval = t.TempDir(), blockstore.NewMemory(), 0
	cfg.Now = func() time.Time { return now }
	m, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	for i, want := range []string{"removed-20261130-170000", "removed-20261130-170000-2"} {
		if _, err := m.CreateDisk(ctx, DiskSpec{Name: "d", Size: 1 << 20, BlockSize: 64 << 10}); err != nil {
			t.Fatal(err)
		}
		h, _ := m.Head("d")
		data := bytes.Repeat([]byte{byte(0xa0 + i)}, 100<<10)
		if _, err := h.WriteAt(data, 4096); err != nil { // not committed
			t.Fatal(err)
		}
		kept, err := m.RemoveDiskKeepingHead(ctx, "d")
		if err != nil {
			t.Fatal(err)
		}
		if kept != want {
			t.Fatalf("removal %d kept replica %q, want %q", i, kept, want)
		}
		if _, err := m.Head("d"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("head after removal: got %v, want ErrNotFound", err)
		}
		if _, err := h.WriteAt(data, 0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("write to the removed head: got %v, want ErrNotFound", err)
		}
		v, err := m.OpenView(ctx, Ref{Disk: "d", Replica: kept})
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(data))
		_, err = v.ReadAt(got, 4096)
		v.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("replica %s: read %v, content equal %v; want the head's writes", kept, err, bytes.Equal(got, data))
		}
	}
	if _, err := m.RemoveDiskKeepingHead(ctx, "d"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removing a removed disk: got %v, want ErrNotFound", err)
	}
}

// TestRemoveDiskKeepingHeadWhileWriting removes a disk while a writer
// keeps writing: every write that returned must be in the kept replica.
func TestRemoveDiskKeepingHeadWhileWriting(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.Dir, cfg.Store, cfg.CommitInterval = t.TempDir(), blockstore.NewMemory(), 0
	m, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const bs, blocks = 4096, 256
	if _, err := m.CreateDisk(ctx, DiskSpec{Name: "d", Size: bs * blocks, BlockSize: bs}); err != nil {
		t.Fatal(err)
	}
	h, _ := m.Head("d")
	started := make(chan struct{})
	done := make(chan [blocks]byte)
	go func() {
		var last [blocks]byte // the value of each block's last write that returned
		buf := make([]byte, bs)
		for i := 0; ; i++ {
			b := i % blocks
			val := byte(i/blocks + 1)
			for k := range buf {
				buf[k] = val
			}
			if _, err := h.WriteAt(buf, int64(b)*bs); err != nil {
				done <- last
				return
			}
			last[b] = val
			if i == blocks {
				close(started)
			}
		}
	}()
	<-started
	kept, err := m.RemoveDiskKeepingHead(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	last := <-done
	v, err := m.OpenView(ctx, Ref{Disk: "d", Replica: kept})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	got := make([]byte, bs)
	for b := range blocks {
		if _, err := v.ReadAt(got, int64(b)*bs); err != nil {
			t.Fatal(err)
		}
		if got[0] != last[b] || got[bs-1] != last[b] {
			t.Fatalf("block %d of replica %s: got %#x, want %#x (the last write that returned)", b, kept, got[0], last[b])
		}
	}
}
