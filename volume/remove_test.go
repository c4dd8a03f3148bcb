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
	m := openRaceManager(t)
	h := createRaceDisk(t, m)
	done := writeUntilRefused(h)
	kept, err := m.RemoveDiskKeepingHead(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	checkLastWrites(t, m, kept, <-done)
}

// TestGiveUpDisk checks that giving a disk up keeps no replica when the
// head's committed root is the one handed over, and otherwise keeps the
// head as a replica holding every write that returned before the call,
// even one racing it: nothing slips in between the commit and the removal.
func TestGiveUpDisk(t *testing.T) {
	ctx := context.Background()
	m := openRaceManager(t)
	h := createRaceDisk(t, m)
	if _, err := h.WriteAt(bytes.Repeat([]byte{1}, raceBS), 0); err != nil {
		t.Fatal(err)
	}
	info, err := m.Commit(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	if kept, err := m.GiveUpDisk(ctx, "d", "fenced", info.Root); err != nil || kept.Name != "" {
		t.Fatalf("give up at the handed-over root: kept %q, %v; want nothing kept", kept, err)
	}
	if reps, _ := m.ListReplicas(ctx, "d"); len(reps) != 0 {
		t.Fatalf("replicas after a clean give-up: %+v", reps)
	}

	h = createRaceDisk(t, m)
	done := writeUntilRefused(h)
	kept, err := m.GiveUpDisk(ctx, "d", "fenced", info.Root)
	if err != nil || kept.Name != "fenced" {
		t.Fatalf("give up while writing: kept %q, %v; want replica fenced", kept.Name, err)
	}
	last := <-done
	if _, err := m.Head("d"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("head after give-up: got %v, want ErrNotFound", err)
	}
	if reps, err := m.ListReplicas(ctx, "d"); err != nil || len(reps) != 1 || !reps[0].Root.Equals(kept.Root) {
		t.Fatalf("replicas after the give-up: %+v, %v; want one at the kept root %s", reps, err, kept.Root)
	}
	checkLastWrites(t, m, kept.Name, last)
}

const raceBS, raceBlocks = 4096, 256

func openRaceManager(t *testing.T) *Manager {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Dir, cfg.Store, cfg.CommitInterval = t.TempDir(), blockstore.NewMemory(), 0
	m, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func createRaceDisk(t *testing.T, m *Manager) *Head {
	t.Helper()
	if _, err := m.CreateDisk(context.Background(), DiskSpec{Name: "d", Size: raceBS * raceBlocks, BlockSize: raceBS}); err != nil {
		t.Fatal(err)
	}
	h, _ := m.Head("d")
	return h
}

// writeUntilRefused writes every block of h over and over from a goroutine
// until a write fails; it returns once every block was written once, and
// the channel then gives the value of each block's last write that
// returned.
func writeUntilRefused(h *Head) <-chan [raceBlocks]byte {
	started := make(chan struct{})
	done := make(chan [raceBlocks]byte, 1)
	go func() {
		var last [raceBlocks]byte
		buf := make([]byte, raceBS)
		for i := 0; ; i++ {
			b := i % raceBlocks
			val := byte(i/raceBlocks + 1)
			for k := range buf {
				buf[k] = val
			}
			if _, err := h.WriteAt(buf, int64(b)*raceBS); err != nil {
				done <- last
				return
			}
			last[b] = val
			if i == raceBlocks {
				close(started)
			}
		}
	}()
	<-started
	return done
}

// checkLastWrites checks that replica kept of disk d holds every block's
// last write that returned.
func checkLastWrites(t *testing.T, m *Manager, kept string, last [raceBlocks]byte) {
	t.Helper()
	v, err := m.OpenView(context.Background(), Ref{Disk: "d", Replica: kept})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	got := make([]byte, raceBS)
	for b := range raceBlocks {
		if _, err := v.ReadAt(got, int64(b)*raceBS); err != nil {
			t.Fatal(err)
		}
		if got[0] != last[b] || got[raceBS-1] != last[b] {
			t.Fatalf("block %d of replica %s: got %#x, want %#x (the last write that returned)", b, kept, got[0], last[b])
		}
	}
}

// TestCreateDiskAtARootHeldElsewhere: a disk made at a root whose map is
// held on other nodes only (a take's adopt while its holder is cut off)
// exists once CreateDiskAt returns, and CreateDiskAt says so. It used to
// fail on counting the root's used blocks after the head was made, and a
// take handed the disk back while the head stayed and took writes.
func TestCreateDiskAtARootHeldElsewhere(t *testing.T) {
	ctx := context.Background()
	elsewhere := openRaceManager(t)
	h := createRaceDisk(t, elsewhere)
	if _, err := h.WriteAt(bytes.Repeat([]byte{1}, raceBS), 0); err != nil {
		t.Fatal(err)
	}
	src, err := elsewhere.Commit(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	m := openRaceManager(t) // a store without a block of src.Root
	info, err := m.CreateDiskAt(ctx, DiskSpec{Name: "d", Size: src.Size, BlockSize: src.BlockSize}, src.Root)
	if err != nil {
		t.Fatalf("create at a root held elsewhere: %v", err)
	}
	if info.Name != "d" || info.Root != src.Root {
		t.Fatalf("create at a root held elsewhere: %+v, want disk d at %s", info, src.Root)
	}
	if _, err := m.Head("d"); err != nil {
		t.Fatalf("head after the create: %v", err)
	}
}
