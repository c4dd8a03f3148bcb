package volume

import (
	"context"
	"testing"
	"time"

	"github.com/weft-mesh/weft/blockstore"
)

// TestCommitDue checks the background commit policy: a dirty head is due
// once it has been quiet for CommitQuiet, or once its oldest write is
// CommitInterval old even if writes keep coming.
func TestCommitDue(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := DefaultConfig()
	cfg.Dir, cfg.Store, cfg.CommitInterval = t.TempDir(), blockstore.NewMemory(), 0
	cfg.Now = func() time.Time { return now }
	m, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.CreateDisk(ctx, DiskSpec{Name: "d", Size: 1 << 20, BlockSize: 4096}); err != nil {
		t.Fatal(err)
	}
	h, _ := m.Head("d")
	const maxAge, quiet = 30 * time.Second, 2 * time.Second
	if h.commitDue(now, maxAge, quiet) {
		t.Fatal("clean head is due for a commit")
	}
	start := now
	for now.Sub(start) < maxAge { // a write every second: never quiet
		h.WriteAt([]byte{1}, 0)
		if due := h.commitDue(now.Add(time.Second), maxAge, quiet); due != (now.Add(time.Second).Sub(start) >= maxAge) {
			t.Fatalf("%v after the first write, one second after the last: due = %v", now.Add(time.Second).Sub(start), due)
		}
		now = now.Add(time.Second)
	}
	if _, err := m.Commit(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if h.commitDue(now.Add(time.Hour), maxAge, quiet) {
		t.Fatal("head due for a commit right after committing everything")
	}
	h.WriteAt([]byte{2}, 0)
	if h.commitDue(now.Add(quiet-time.Millisecond), maxAge, quiet) {
		t.Fatal("due before the quiet period passed")
	}
	if !h.commitDue(now.Add(quiet), maxAge, quiet) {
		t.Fatal("not due after the quiet period")
	}
}
