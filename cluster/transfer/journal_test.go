package transfer

import (
	"context"
	"io"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/internal/clock"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
)

// TestJournalAndPartialRootsPersist: what a journal and the partial roots
// hold survives a reload; a transfer that ended is forgotten unless the
// journal was closing; partial roots older than partialTTL are dropped.
func TestJournalAndPartialRootsPersist(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	jpath, ppath := filepath.Join(dir, "transfers.json"), filepath.Join(dir, "partial.json")

	j, err := loadJournal(jpath, clk)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c"} {
		if err := j.add(id, api.TransferRequest{Source: "vm", From: "berlin"}); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Second)
	}
	if err := j.done("a"); err != nil {
		t.Fatal(err)
	}
	j.close()
	if err := j.done("b"); err != nil { // cut short by the shutdown: stays
		t.Fatal(err)
	}
	j, err = loadJournal(jpath, clk)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range j.pending() {
		ids = append(ids, e.ID)
	}
	if want := []string{"b", "c"}; !slices.Equal(ids, want) {
		t.Fatalf("journaled after a reload: got %v, want %v", ids, want)
	}

	p, err := loadPartialRoots(ppath, clk)
	if err != nil {
		t.Fatal(err)
	}
	old, recent := testCID(t, 1), testCID(t, 2)
	if err := p.add(old); err != nil {
		t.Fatal(err)
	}
	clk.Advance(partialTTL - time.Hour)
	if err := p.add(recent); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour)
	p, err = loadPartialRoots(ppath, clk)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.list(); !slices.Equal(got, []cid.Cid{recent}) {
		t.Fatalf("partial roots after %v: got %v, want only %v", partialTTL+time.Hour, got, recent)
	}
}

// countingNet is a lone network that counts the streams opened on it.
type countingNet struct {
	loneNet
	opens *atomic.Int64
}

func (n countingNet) Open(ctx context.Context, p meshnet.PeerID, proto meshnet.Protocol) (io.ReadWriteCloser, error) {
	n.opens.Add(1)
	return n.loneNet.Open(ctx, p, proto)
}

// TestResumedPushRetriesAnUnreachedTarget: a resumed push that starts but
// fails because its target cannot be reached yet (a restarted target
// alive before it serves) stays journaled and is tried again every
// resumeRetry, until resumeFor has passed: then it is forgotten.
func TestResumedPushRetriesAnUnreachedTarget(t *testing.T) {
	tc, vols, clk := newTestNode(t, blockstore.NewMemory())
	root := writtenRoots(t, vols, 1)[0]
	if _, err := tc.cat.Put(catalog.Entry{Key: catalog.DiskKey("src"), Owner: tc.self.String(), Root: root, Size: 1 << 20, BlockSize: 4096}); err != nil {
		t.Fatal(err)
	}
	opens := &atomic.Int64{}
	s, err := New(Config{Net: countingNet{loneNet{tc.self}, opens}, Catalog: tc, Volumes: vols, Blocks: noPeers{}, Store: blockstore.NewMemory(), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.journal.add("cut", api.TransferRequest{Source: "src", Targets: []string{"archive"}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ended := make(chan struct{})
	wctx, wcancel := context.WithCancel(ctx) // ends the waits below if resume returns
	go func() { defer close(ended); defer wcancel(); s.resume(ctx) }()
	for try := int64(1); try <= 2; try++ {
		if err := clk.BlockUntil(wctx, 1); err != nil {
			t.Fatalf("try %d: resume waits for no retry (%v); journaled: %v", try, err, s.journal.pending())
		}
		if got := opens.Load(); got != try {
			t.Fatalf("try %d: %d pushes reached the network, want %d", try, got, try)
		}
		if j, ok := s.Get("cut"); !ok || !j.failedUnreached() {
			t.Fatalf("try %d: the push is not a failure for want of its target: %+v", try, j.Info())
		}
		if len(s.journal.pending()) != 1 {
			t.Fatalf("try %d: a push that failed for want of its target is forgotten", try)
		}
		clk.Advance(resumeRetry)
	}
	if err := clk.BlockUntil(wctx, 1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(resumeFor)
	<-ended
	if got := s.journal.pending(); len(got) != 0 {
		t.Fatalf("still journaled after %v: %v", resumeFor, got)
	}
}
