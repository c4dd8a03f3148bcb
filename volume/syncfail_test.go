package volume_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/internal/powerloss"
)

// TestFlushAfterFailedDataSyncFails: the overlay's data sync fails once
// and would succeed after. Linux may have dropped the pages it could not
// write and reports that once, so the next sync says nothing: every later
// flush and commit must fail too, until the disk is reopened, which serves
// what was durable.
func TestFlushAfterFailedDataSyncFails(t *testing.T) {
	ctx := t.Context()
	fs := powerloss.New(4)
	mem := blockstore.NewMemory()
	m, h := plHead(t, fs, mem)
	if _, err := h.WriteAt(plBlock(1), 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt(plBlock(2), plBS); err != nil {
		t.Fatal(err)
	}
	var fired atomic.Bool
	fs.SetFault(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileSync && filepath.Base(op.Path) == "overlay" && !fired.Swap(true) {
			return powerloss.ErrIO
		}
		return nil
	})
	if err := h.Flush(ctx); !errors.Is(err, powerloss.ErrIO) {
		t.Fatalf("Flush whose data sync fails: got %v, want EIO", err)
	}
	for _, what := range []string{"second flush", "third flush"} {
		if err := h.Flush(ctx); !errors.Is(err, powerloss.ErrIO) {
			t.Fatalf("%s after a failed data sync: got %v, want the sync's EIO", what, err)
		}
	}
	if _, err := m.Commit(ctx, plDisk); !errors.Is(err, powerloss.ErrIO) {
		t.Fatalf("commit after a failed data sync: got %v, want the sync's EIO", err)
	}
	if _, err := h.WriteAt(plBlock(3), 2*plBS); err != nil {
		t.Fatalf("a write goes on after a failed data sync: %v", err)
	}
	if err := h.Flush(ctx); !errors.Is(err, powerloss.ErrIO) {
		t.Fatalf("flush of a later write: got %v, want the sync's EIO", err)
	}

	// The power goes: what the last good flush made durable is there, and
	// the reopened disk flushes and commits again.
	m2, h2, got := plReopen(t, fs.CrashNow(), mem, plBS)
	if !bytes.Equal(got, plBlock(1)) {
		t.Fatalf("block 0 after the power loss starts with %d, want the flushed 1", got[0])
	}
	if _, err := h2.WriteAt(plBlock(4), plBS); err != nil {
		t.Fatal(err)
	}
	if err := h2.Flush(ctx); err != nil {
		t.Fatalf("flush of the reopened disk: %v", err)
	}
	if _, err := m2.Commit(ctx, plDisk); err != nil {
		t.Fatalf("commit of the reopened disk: %v", err)
	}
}
