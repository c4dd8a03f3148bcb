package catalog

import (
	"fmt"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// Peer IDs in their base58 string form (shape only).
const (
	peerA = "12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	peerB = "12D3KooWBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
	peerC = "12D3KooWCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"
)

// testRoot returns a distinct dag-cbor CID for each n.
func testRoot(t testing.TB, n int) cid.Cid {
	t.Helper()
	c, err := cid.V1Builder{Codec: cid.DagCBOR, MhType: mh.SHA2_256}.Sum(fmt.Appendf(nil, "root %d", n))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fixedClock returns a clock for Catalog.now that starts at a fixed time
// and advances by a second on every reading.
func fixedClock() func() time.Time {
	t := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	return func() time.Time {
		t = t.Add(time.Second)
		return t
	}
}

func newTestCatalog(self string) *Catalog {
	c := New(self)
	c.now = fixedClock()
	return c
}

func diskEntry(t testing.TB, name string, root int, epoch uint64, owner string) Entry {
	t.Helper()
	return Entry{
		Key:       DiskKey(name),
		Root:      testRoot(t, root),
		Owner:     owner,
		Epoch:     epoch,
		Size:      1 << 30,
		BlockSize: 64 << 10,
		Replicas:  3,
		Created:   time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

func mustPut(t testing.TB, c *Catalog, e Entry) Entry {
	t.Helper()
	stored, err := c.Put(e)
	if err != nil {
		t.Fatalf("put %s: %v", e.Key, err)
	}
	return stored
}
