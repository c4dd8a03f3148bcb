package transfer

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/internal/clock"
)

// fuzzNow is the clock the journal fuzz targets load under.
var fuzzNow = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// fuzzFile returns a function that writes b to one file in a directory
// made once per fuzz worker and returns its path: a directory per input
// would cost more than the decoding it feeds.
func fuzzFile(f *testing.F, name string) func(t *testing.T, b []byte) string {
	path := filepath.Join(f.TempDir(), name)
	return func(t *testing.T, b []byte) string {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
}

// FuzzLoadJournal feeds arbitrary bytes to the loader of the transfer
// journal (DIR/transfers.json, read at every start): an error or a
// journal whose every entry can be forgotten by its ID, never a panic.
func FuzzLoadJournal(f *testing.F) {
	f.Add([]byte(`{"a":{"id":"a","request":{"source":"vm","from":"berlin","options":{}},"started":"2026-12-01T09:00:00Z"}}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{}`))
	write := fuzzFile(f, "transfers.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := loadJournal(write(t, b), clock.NewFake(fuzzNow))
		if err != nil {
			return
		}
		pending := j.pending()
		for i, e := range pending {
			if e.ID == "" {
				t.Fatal("loaded an entry without an ID")
			}
			if i > 0 && e.Started.Before(pending[i-1].Started) {
				t.Fatalf("pending not oldest first: %v before %v", pending[i-1].Started, e.Started)
			}
		}
		// done must forget every entry, or it would resume at every start.
		for _, e := range pending {
			if err := j.done(e.ID); err != nil {
				t.Fatal(err)
			}
		}
		if left := j.pending(); len(left) != 0 {
			t.Fatalf("%d entries left after done of every one: %+v", len(left), left)
		}
	})
}

// FuzzLoadPartialRoots feeds arbitrary bytes to the loader of the roots
// received in part (DIR/partial.json): an error or canonical roots within
// their time to live, each of which done forgets, never a panic.
func FuzzLoadPartialRoots(f *testing.F) {
	f.Add([]byte(`{"bafkqaaa":"2026-12-01T09:00:00Z"}`))
	f.Add([]byte(`{"QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n":"2026-11-30T10:00:00Z","bafkqaaa":"2020-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"not a cid":"2026-12-01T09:00:00Z"}`))
	f.Add([]byte(`null`))
	write := fuzzFile(f, "partial.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		clk := clock.NewFake(fuzzNow)
		p, err := loadPartialRoots(write(t, b), clk)
		if err != nil {
			return
		}
		if n := len(p.list()); n != len(p.roots) {
			t.Fatalf("list gives %d of %d roots", n, len(p.roots))
		}
		for r, since := range p.roots {
			c, err := cid.Decode(r)
			if err != nil || c.String() != r {
				t.Fatalf("kept root %q, want canonical CIDs only (%v)", r, err)
			}
			if age := fuzzNow.Sub(since); age < 0 || age > partialTTL {
				t.Fatalf("kept root %s started %v ago, want within [0, %v]", r, age, partialTTL)
			}
		}
		for _, c := range p.list() {
			if err := p.done(c); err != nil {
				t.Fatal(err)
			}
		}
		if n := len(p.roots); n != 0 {
			t.Fatalf("%d roots left after done of every one", n)
		}
	})
}
