package blockstore_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/blockstore/storetest"
	"github.com/weft-mesh/weft/internal/powerloss"
)

// TestPutAfterFailedSegmentSyncFails: a segment's fdatasync fails once and
// would succeed after. Linux may have dropped the pages it could not write
// and reports that once, so a later fdatasync of the segment says nothing:
// a put whose records were written to the segment before the failure was
// known (group fsync) must fail too, the store must never write to or sync
// that segment again nor index its unsynced records, and later puts go to
// a fresh segment and survive a power loss.
func TestPutAfterFailedSegmentSyncFails(t *testing.T) {
	ctx := testCtx(t)
	fs := powerloss.New(5)
	d, err := blockstore.Open(powerDir, powerOptions(fs))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer func() { d.Close() }()
	r := testRand(t)
	before := storetest.NewBlock(r, 4<<10)
	putAll(t, d, []blockstore.Block{before})

	a, b := storetest.NewBlock(r, 4<<10), storetest.NewBlock(r, 4<<10)
	var (
		mu        sync.Mutex
		failedSeg string // the segment whose sync failed
		resyncs   int    // its syncs after the failure
		bWrote    = make(chan struct{})
		bErr      = make(chan error, 1)
		once      sync.Once
	)
	fs.SetFault(func(op errorfs.Op) error {
		if !strings.HasSuffix(op.Path, ".seg") || op.Kind.ReadOrWrite() != errorfs.OpIsWrite {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case failedSeg == "" && op.Kind == errorfs.OpFileSyncData:
			failedSeg = op.Path
			mu.Unlock()
			// While a's fdatasync runs, b's records land in the same
			// segment: one group fsync is to cover both.
			go func() { bErr <- d.Put(ctx, b) }()
			select {
			case <-bWrote:
			case <-time.After(10 * time.Second):
				t.Error("b's records never reached the segment")
			}
			mu.Lock()
			return powerloss.ErrIO
		case op.Path == failedSeg && op.Kind == errorfs.OpFileSyncData:
			resyncs++
		case op.Path == failedSeg:
			once.Do(func() { close(bWrote) })
		}
		return nil
	})
	if err := d.Put(ctx, a); !errors.Is(err, powerloss.ErrIO) {
		t.Fatalf("Put whose segment sync fails: got %v, want EIO", err)
	}
	if err := <-bErr; !errors.Is(err, powerloss.ErrIO) {
		t.Fatalf("Put written before the failed sync and synced after it: got %v, want the sync's EIO", err)
	}
	for _, blk := range []blockstore.Block{a, b} {
		if has, err := d.Has(ctx, blk.CID); err != nil || has {
			t.Fatalf("Has of a block whose put failed: %v, %v; want false", has, err)
		}
	}
	c := storetest.NewBlock(r, 4<<10)
	putAll(t, d, []blockstore.Block{c, a})
	mu.Lock()
	if resyncs > 0 {
		t.Errorf("the segment whose sync failed was synced again %d times", resyncs)
	}
	mu.Unlock()
	fs.SetFault(nil)
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// The power goes: every acknowledged block is there.
	d, err = blockstore.Open(powerDir, powerOptions(fs.CrashNow()))
	if err != nil {
		t.Fatalf("Open after a power loss: %v", err)
	}
	checkBlocks(t, d, []blockstore.Block{before, c, a})
}
