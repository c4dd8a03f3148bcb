package volume

import (
	"testing"
	"time"

	"github.com/weft-mesh/weft/blockstore"
)

// TestPeerBlocksGraceRestartsWhenStoredAgain: a block pushed again (a
// second flush of the same data, a heal copy after a push) is kept for a
// whole grace from its last arrival, not its first.
func TestPeerBlocksGraceRestartsWhenStoredAgain(t *testing.T) {
	const grace = 10 * time.Minute
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	p := NewPeerBlocks(func() time.Time { return now }, grace)
	a := blockstore.NewBlock(blockstore.CodecRaw, []byte("a"))
	b := blockstore.NewBlock(blockstore.CodecRaw, []byte("b"))
	p.Storing([]blockstore.Block{a, b})
	now = now.Add(grace - time.Second)
	p.Storing([]blockstore.Block{a})
	now = now.Add(time.Second)
	if !p.InGrace(a.CID) || p.InGrace(b.CID) {
		t.Fatalf("one grace after both arrived, a again a second before: in grace a %v, b %v; want a only", p.InGrace(a.CID), p.InGrace(b.CID))
	}
	now = now.Add(grace - time.Second)
	if p.InGrace(a.CID) {
		t.Fatal("a grace after a's last arrival: still in grace")
	}
}
