package transfer

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/internal/clock"
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
