package volume

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/weft-mesh/weft/blockstore"
)

// TestOverlayFloorBudget: writes draw on a budget and read the free space
// again only once it is spent; a write that would cross the floor fails
// with ErrNoSpace and takes nothing.
func TestOverlayFloorBudget(t *testing.T) {
	free, reads := int64(100<<20), 0
	f := &overlayFloor{minFree: 20 << 20, free: func() (int64, error) {
		reads++
		return free, nil
	}}
	// 80 MiB above the floor: each read grants half of what is left.
	var taken int64
	for taken+1<<20 <= 60<<20 {
		if err := f.take(1 << 20); err != nil {
			t.Fatalf("take after %d bytes: %v", taken, err)
		}
		taken += 1 << 20
		free -= 1 << 20
	}
	if reads > 60/(maxBudget>>20)+2 {
		t.Fatalf("%d reads of the free space for 60 writes of 1 MiB, want one per %d MiB or so", reads, maxBudget>>20)
	}
	if err := f.take(0); err != nil {
		t.Fatalf("take(0): %v", err)
	}
	// 20 MiB above the floor now: a 30 MiB write fails, a 10 MiB one does not.
	if err := f.take(30 << 20); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("take across the floor: %v, want ErrNoSpace", err)
	}
	if err := f.take(10 << 20); err != nil {
		t.Fatalf("take above the floor: %v", err)
	}
	// Another writer takes the room: the overlays notice within maxBudget.
	free = f.minFree
	var past int64
	for f.take(1<<20) == nil {
		past += 1 << 20
		if past > maxBudget {
			t.Fatalf("writes went on %d bytes past the floor after another writer took the room", past)
		}
	}
	var nilFloor *overlayFloor
	if err := nilFloor.take(1 << 40); err != nil {
		t.Fatalf("no floor: %v", err)
	}
	blind := &overlayFloor{minFree: 1, free: func() (int64, error) { return 0, errors.New("statfs: not supported") }}
	if err := blind.take(1 << 20); err != nil {
		t.Fatalf("a file system that cannot tell its free space: %v, want the write taken", err)
	}
}

// TestOverlaysStopAtTheFloor fills a small tmpfs through a disk's overlay:
// the writes fail with ErrNoSpace while the floor is still free (the block
// index's: a full device is fatal to it), every acknowledged write reads
// back, and blocks already in the overlay can still be rewritten.
func TestOverlaysStopAtTheFloor(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs; CI runs it as root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=24m"); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	const floor = 8 << 20
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.Dir, cfg.Store, cfg.CommitInterval, cfg.MinFreeBytes = dir, blockstore.NewMemory(), 0, floor
	m, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.CreateDisk(ctx, DiskSpec{Name: "d", Size: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	h, err := m.Head("d")
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	var acked [][]byte
	for i := range 64 {
		p := make([]byte, 1<<20)
		for j := range p {
			p[j] = byte(r.Uint32())
		}
		if _, err = h.WriteAt(p, int64(i)<<20); err != nil {
			break
		}
		acked = append(acked, p)
	}
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "block index") {
		t.Fatalf("filling the overlay: %v after %d MiB, want ErrNoSpace at the floor", err, len(acked))
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < floor-1<<20 {
		t.Fatalf("%d bytes free after the overlay filled, want about the %d-byte floor", free, floor)
	}
	again := bytes.Repeat([]byte{0xa5}, 4096)
	if _, err := h.WriteAt(again, 0); err != nil {
		t.Fatalf("rewriting a block the overlay holds: %v", err)
	}
	copy(acked[0], again)
	got := make([]byte, 1<<20)
	for i, want := range acked {
		if _, err := h.ReadAt(got, int64(i)<<20); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read MiB %d: %v, equal %v", i, err, bytes.Equal(got, want))
		}
	}
}
