package volume

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weft-mesh/weft/blockstore"
)

// TestCommitPunchesOneCommitLate checks that a commit leaves the blocks it
// cleaned allocated in the overlay (a rewrite then lands on allocated
// pages), punches them at the next commit unless they were written again,
// and punches them once the head has been quiet; and that every read and
// partial write meanwhile sees the committed content.
func TestCommitPunchesOneCommitLate(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := openTestManager(t, t.TempDir(), blockstore.NewMemory(), clock)
	t.Cleanup(func() { m.Close() })
	const bs = 4096
	h := createSmallDisk(t, m, bs)
	want := make([]byte, 8*bs)
	write := func(p []byte, off int64) {
		t.Helper()
		if _, err := h.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], p)
	}
	check := func(when string) {
		t.Helper()
		got := make([]byte, len(want))
		if _, err := h.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: read differs at byte %d", when, firstDiff(got, want))
		}
	}
	allocated := func(want ...bool) {
		t.Helper()
		for i, w := range want {
			if got := overlayHolds(t, h, int64(i)); got != w {
				t.Fatalf("overlay block %d allocated %v, want %v (want %v)", i, got, w, want)
			}
		}
	}
	commit := func() {
		t.Helper()
		if _, err := m.Commit(ctx, "d"); err != nil {
			t.Fatal(err)
		}
	}

	write(bytes.Repeat([]byte{0xaa}, 4*bs), 0)
	commit()
	allocated(true, true, true, true, false)
	check("after the first commit")

	// A partial write of a clean, unpunched block keeps the rest of the
	// block's committed bytes.
	write([]byte("partial"), bs+100)
	write(bytes.Repeat([]byte{0x55}, bs), 2*bs)
	check("after rewriting blocks 1 and 2")
	commit()
	// Blocks 0 and 3 were clean since the first commit: punched now.
	allocated(false, true, true, false)
	check("after the second commit")

	// Quiet for less than CommitInterval: nothing punched yet.
	if err := h.punchQuiet(clock.t, time.Hour); err != nil {
		t.Fatal(err)
	}
	allocated(false, true, true, false)
	if err := h.punchQuiet(clock.t.Add(time.Hour), time.Hour); err != nil {
		t.Fatal(err)
	}
	allocated(false, false, false, false)
	check("after the quiet punch")

	// Punched blocks take partial writes with their committed content.
	write([]byte("again"), 2*bs+7)
	check("after a partial write of a punched block")
	commit()
	check("after the third commit")
}

// overlayHolds reports whether block i of h's overlay file has space.
func overlayHolds(t *testing.T, h *Head, i int64) bool {
	t.Helper()
	off := i * h.blockSize
	next, err := unix.Seek(int(h.ov.data.Fd()), off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return next < off+h.blockSize
}

// createSmallDisk creates disk "d" of 8 blocks of bs bytes, one replica,
// and returns its head.
func createSmallDisk(t *testing.T, m *Manager, bs int64) *Head {
	t.Helper()
	if _, err := m.CreateDisk(context.Background(), DiskSpec{Name: "d", Size: 8 * bs, BlockSize: bs, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	h, err := m.Head("d")
	if err != nil {
		t.Fatal(err)
	}
	return h
}
