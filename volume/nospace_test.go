package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
	if info, err := m.DiskInfo(ctx, "d"); err != nil || !strings.Contains(info.CommitError, "out of space") || info.DirtyBytes == 0 {
		t.Fatalf("disk info after the failed commit: %+v, %v; want the error and the dirty bytes", info, err)
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
	if err != nil || info.DirtyBytes != 0 || info.CommitError != "" {
		t.Fatalf("commit once space is back: %+v, %v; want nothing dirty and no error", info, err)
	}
}

// TestFullStoreGivesBackOverlaySpace: while commits fail for lack of
// space, the background loop punches the overlay copies the last
// successful commit left behind (normally kept until the next commit or
// a long quiet), since they take space the store needs; reads still see
// every block.
func TestFullStoreGivesBackOverlaySpace(t *testing.T) {
	ctx := context.Background()
	store := &fullStore{Store: blockstore.NewMemory()}
	cfg := DefaultConfig()
	// Commits once quiet for 10 ms; the quiet punch would wait an hour.
	cfg.Dir, cfg.Store, cfg.CommitInterval, cfg.CommitQuiet, cfg.Now = t.TempDir(), store, time.Hour, 10*time.Millisecond, time.Now
	m, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	const bs = 4096
	h := createSmallDisk(t, m, bs)
	want := make([]byte, 8*bs)
	copy(want, bytes.Repeat([]byte{0xaa}, 4*bs))
	copy(want[5*bs:], bytes.Repeat([]byte{0x55}, bs))
	if _, err := h.WriteAt(want[:4*bs], 0); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Commit(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if !overlayHolds(t, h, 0) {
		t.Fatal("the commit punched its own blocks at once; this test assumes one commit late")
	}
	store.full.Store(true)
	if _, err := h.WriteAt(want[5*bs:6*bs], 5*bs); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); overlayHolds(t, h, 0) || overlayHolds(t, h, 3); {
		if time.Now().After(deadline) {
			t.Fatal("the committed blocks still take overlay space while commits fail for lack of it")
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := make([]byte, len(want))
	if _, err := h.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read after the punch: %v, equal %v", err, bytes.Equal(got, want))
	}
	if !overlayHolds(t, h, 5) {
		t.Fatal("the uncommitted block left the overlay")
	}
}

// TestCommitErrorIsTheDisks: disk info's commit error says why the
// disk's writes could not be committed, not the caller's publish error
// (creating a replica that exists): a failed CreateReplica leaves it
// empty.
func TestCommitErrorIsTheDisks(t *testing.T) {
	ctx := context.Background()
	store := &fullStore{Store: blockstore.NewMemory()}
	m := openTestManager(t, t.TempDir(), store, &fakeClock{})
	defer m.Close()
	if _, err := m.CreateDisk(ctx, DiskSpec{Name: "d", Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	h, err := m.Head("d")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt(bytes.Repeat([]byte{0x5a}, 64<<10), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateReplica(ctx, "d", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateReplica(ctx, "d", "a"); !errors.Is(err, ErrExists) {
		t.Fatalf("second replica a: got %v, want ErrExists", err)
	}
	info, err := m.Commit(ctx, "d")
	if err != nil || info.CommitError != "" {
		t.Fatalf("commit after a refused replica: %+v, %v; want no commit error", info, err)
	}

	if _, err := h.WriteAt(bytes.Repeat([]byte{0x6b}, 64<<10), 0); err != nil {
		t.Fatal(err)
	}
	store.full.Store(true)
	if _, err := m.Commit(ctx, "d"); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("commit into a full store: got %v, want ErrNoSpace", err)
	}
	store.full.Store(false)
	if info, err := m.Commit(ctx, "d"); err != nil || info.CommitError != "" {
		t.Fatalf("commit once space is back: %+v, %v; want no commit error", info, err)
	}
}

// countingHandler counts the log records whose message contains sub.
type countingHandler struct {
	slog.Handler
	sub string
	n   *atomic.Int64
}

func (countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (c countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, c.sub) {
		c.n.Add(1)
	}
	return nil
}

// TestDeviceFullLogStartsAfreshForANewDisk: background commits log a
// device-full failure once per head, and forget a removed head, so a disk
// created again under the same name logs its own failure.
func TestDeviceFullLogStartsAfreshForANewDisk(t *testing.T) {
	ctx := context.Background()
	store := &fullStore{Store: blockstore.NewMemory()}
	var logged atomic.Int64
	cfg := DefaultConfig()
	cfg.Dir, cfg.Store, cfg.CommitInterval, cfg.Now = t.TempDir(), store, 0, (&fakeClock{}).now
	cfg.Logger = slog.New(countingHandler{Handler: slog.DiscardHandler, sub: "device full", n: &logged})
	m, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	store.full.Store(true)
	full := fullHeads{}
	for round := 1; round <= 2; round++ {
		if _, err := m.CreateDisk(ctx, DiskSpec{Name: "d", Size: 1 << 20}); err != nil {
			t.Fatal(err)
		}
		h, err := m.Head("d")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.WriteAt(bytes.Repeat([]byte{byte(round)}, 64<<10), 0); err != nil {
			t.Fatal(err)
		}
		m.backgroundCommits(cfg.Now(), full)
		m.backgroundCommits(cfg.Now(), full)
		if n := logged.Load(); n != int64(round) {
			t.Fatalf("round %d: %d device-full logs, want one per disk", round, n)
		}
		if err := m.RemoveDisk(ctx, "d"); err != nil {
			t.Fatal(err)
		}
		m.backgroundCommits(cfg.Now(), full)
		if len(full) != 0 {
			t.Fatalf("round %d: %d removed heads still counted full", round, len(full))
		}
	}
}
