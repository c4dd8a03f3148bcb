package blockstore_test

import (
	"errors"
	"os"
	"path"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/blockstore/storetest"
	"github.com/weft-mesh/weft/internal/powerloss"
)

// TestIndexLogFullReleasesBallast: another writer took the last bytes
// between a put's free-space check and its index commit, so a write to the
// index's log finds the device full. Pebble panics on a failed log write;
// instead the ballast goes and the write is retried, so the store goes on
// and the block survives a power loss.
func TestIndexLogFullReleasesBallast(t *testing.T) {
	ctx := testCtx(t)
	fs := powerloss.New(11)
	d, err := blockstore.Open(powerDir, powerOptions(fs))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer func() { d.Close() }()
	ballast := path.Join(powerDir, "ballast")
	if _, err := fs.Stat(ballast); err != nil {
		t.Fatalf("no ballast after Open: %v", err)
	}
	r := testRand(t)
	before := storetest.NewBlock(r, 4<<10)
	putAll(t, d, []blockstore.Block{before})

	var (
		mu    sync.Mutex
		fired []errorfs.Op
	)
	fs.SetFault(func(op errorfs.Op) error {
		if (op.Kind != errorfs.OpFileWrite && op.Kind != errorfs.OpFileWriteAt) ||
			path.Base(path.Dir(op.Path)) != "index" || !strings.HasSuffix(op.Path, ".log") {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if len(fired) > 0 {
			return nil
		}
		fired = append(fired, op)
		return powerloss.ErrNoSpace
	})
	// Puts commit their index entries without a sync, so the log is
	// written behind them; Close's synced checkpoint makes sure it is.
	b := storetest.NewBlock(r, 4<<10)
	if err := d.Put(ctx, b); err != nil {
		t.Fatalf("Put: %v", err)
	}
	checkBlocks(t, d, []blockstore.Block{before, b})
	if err := d.Close(); err != nil {
		t.Fatalf("Close after the index log found the device full: %v", err)
	}
	fs.SetFault(nil)
	mu.Lock()
	n := len(fired)
	mu.Unlock()
	if n != 1 {
		t.Fatalf("the index log write failed %d times, want once", n)
	}
	if _, err := fs.Stat(ballast); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ballast after the index log found the device full: %v, want it released", err)
	}

	d, err = blockstore.Open(powerDir, powerOptions(fs.CrashNow()))
	if err != nil {
		t.Fatalf("Open after a power loss: %v", err)
	}
	checkBlocks(t, d, []blockstore.Block{before, b})
}
