// Package storetest is the conformance suite every blockstore.Store
// implementation runs: the behaviour of blockstore.Memory is the reference.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/weft-mesh/weft/blockstore"
)

// Run runs the suite. open must return a new, empty store each time it is
// called; Run closes it when the subtest ends (Close must therefore
// tolerate a second call), and open should remove anything it created with
// t.Cleanup or t.TempDir.
func Run(t *testing.T, open func(t *testing.T) blockstore.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s blockstore.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"GetAbsent", testGetAbsent},
		{"PutMismatch", testPutMismatch},
		{"PutMany", testPutMany},
		{"HasMany", testHasMany},
		{"IdempotentPut", testIdempotentPut},
		{"All", testAll},
		{"Stats", testStats},
		{"Oversized", testOversized},
		{"Sweep", testSweep},
		{"SweepKeepsNewGeneration", testSweepKeepsNewGeneration},
		{"Concurrent", testConcurrent},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// NewBlock returns a raw block of n pseudo-random bytes drawn from r.
func NewBlock(r *rand.Rand, n int) blockstore.Block {
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	return blockstore.NewBlock(blockstore.CodecRaw, data)
}

func newRand(t *testing.T) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, seed>>1))
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustPut(t *testing.T, s blockstore.Store, bs ...blockstore.Block) {
	t.Helper()
	if err := s.PutMany(ctxFor(t), bs); err != nil {
		t.Fatalf("PutMany(%d blocks): %v", len(bs), err)
	}
}

func wantBlock(t *testing.T, s blockstore.Store, b blockstore.Block) {
	t.Helper()
	got, err := s.Get(ctxFor(t), b.CID)
	if err != nil {
		t.Fatalf("Get(%s): %v", b.CID, err)
	}
	if !bytes.Equal(got, b.Data) {
		t.Fatalf("Get(%s): got %d bytes, want the %d put", b.CID, len(got), len(b.Data))
	}
}

func wantAbsent(t *testing.T, s blockstore.Store, c cid.Cid) {
	t.Helper()
	ctx := ctxFor(t)
	if ok, err := s.Has(ctx, c); err != nil || ok {
		t.Fatalf("Has(%s) = %v, %v; want false, nil", c, ok, err)
	}
	if _, err := s.Get(ctx, c); !errors.Is(err, blockstore.ErrNotFound) {
		t.Fatalf("Get(%s): got error %v, want ErrNotFound", c, err)
	}
}

func wantStats(t *testing.T, s blockstore.Store, blocks, bytes int64) {
	t.Helper()
	st := s.Stats()
	if st.Blocks != blocks || st.Bytes != bytes {
		t.Fatalf("Stats() = %+v; want %d blocks, %d bytes", st, blocks, bytes)
	}
	if st.DiskBytes < st.Bytes {
		t.Fatalf("Stats() = %+v; want DiskBytes >= Bytes", st)
	}
}

func testRoundTrip(t *testing.T, s blockstore.Store) {
	ctx := ctxFor(t)
	r := newRand(t)
	raw := NewBlock(r, 4096)
	node := blockstore.NewBlock(blockstore.CodecDagCBOR, []byte{0xa1, 0x61, 0x61, 0x01})
	empty := blockstore.NewBlock(blockstore.CodecRaw, nil)
	for _, b := range []blockstore.Block{raw, node, empty} {
		if err := s.Put(ctx, b); err != nil {
			t.Fatalf("Put(%s): %v", b.CID, err)
		}
		if ok, err := s.Has(ctx, b.CID); err != nil || !ok {
			t.Fatalf("Has(%s) = %v, %v; want true, nil", b.CID, ok, err)
		}
		wantBlock(t, s, b)
	}
	// The returned slice belongs to the caller.
	got, _ := s.Get(ctx, raw.CID)
	got[0] ^= 0xff
	wantBlock(t, s, raw)

	if err := s.Delete(ctx, raw.CID); err != nil {
		t.Fatalf("Delete(%s): %v", raw.CID, err)
	}
	wantAbsent(t, s, raw.CID)
	if err := s.Delete(ctx, raw.CID); err != nil {
		t.Fatalf("Delete of an absent block: got %v, want nil", err)
	}
	wantBlock(t, s, node)
	// Put after Delete stores it again.
	mustPut(t, s, raw)
	wantBlock(t, s, raw)
}

func testGetAbsent(t *testing.T, s blockstore.Store) {
	wantAbsent(t, s, NewBlock(newRand(t), 100).CID)
}

func testPutMismatch(t *testing.T, s blockstore.Store) {
	ctx := ctxFor(t)
	r := newRand(t)
	good := NewBlock(r, 1000)
	bad := blockstore.Block{CID: good.CID, Data: append([]byte{1}, good.Data...)}
	if err := s.Put(ctx, bad); err == nil {
		t.Fatalf("Put of a block whose bytes do not match its CID: got nil error")
	}
	wantAbsent(t, s, good.CID)

	// A CID weft does not store (SHA-256) is refused too.
	h, _ := mh.Sum(good.Data, mh.SHA2_256, -1)
	if err := s.Put(ctx, blockstore.Block{CID: cid.NewCidV1(cid.Raw, h), Data: good.Data}); err == nil {
		t.Fatalf("Put of a SHA-256 CID: got nil error")
	}

	// One bad block in a batch stores nothing.
	other := NewBlock(r, 1000)
	if err := s.PutMany(ctx, []blockstore.Block{other, bad}); err == nil {
		t.Fatalf("PutMany with a mismatched block: got nil error")
	}
	wantAbsent(t, s, other.CID)
	wantStats(t, s, 0, 0)
}

func testPutMany(t *testing.T, s blockstore.Store) {
	r := newRand(t)
	var bs []blockstore.Block
	var total int64
	for i := range 100 {
		b := NewBlock(r, 1+i*97)
		bs = append(bs, b)
		total += int64(len(b.Data))
	}
	// A duplicate inside the batch is stored once.
	mustPut(t, s, append(bs, bs[3])...)
	for _, b := range bs {
		wantBlock(t, s, b)
	}
	wantStats(t, s, int64(len(bs)), total)
	if err := s.PutMany(ctxFor(t), nil); err != nil {
		t.Fatalf("PutMany(nil): got %v, want nil", err)
	}
}

// testHasMany: HasMany answers as Has does for each CID, in the order
// asked, with absent, deleted and repeated CIDs among present ones.
func testHasMany(t *testing.T, s blockstore.Store) {
	ctx := ctxFor(t)
	r := newRand(t)
	var cids []cid.Cid
	var want []bool
	for i := range 300 {
		b := NewBlock(r, 1+i)
		present := i%3 != 0
		if present {
			mustPut(t, s, b)
		}
		cids = append(cids, b.CID)
		want = append(want, present)
	}
	if err := s.Delete(ctx, cids[1]); err != nil {
		t.Fatal(err)
	}
	want[1] = false
	cids, want = append(cids, cids[2], cids[0]), append(want, want[2], want[0])
	got, err := s.HasMany(ctx, cids)
	if err != nil {
		t.Fatalf("HasMany: %v", err)
	}
	if len(got) != len(cids) {
		t.Fatalf("HasMany of %d CIDs answered %d", len(cids), len(got))
	}
	for i, c := range cids {
		if got[i] != want[i] {
			t.Fatalf("HasMany: CID %d (%s) present = %v, want %v", i, c, got[i], want[i])
		}
	}
	if got, err := s.HasMany(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("HasMany(nil) = %v, %v; want empty, nil", got, err)
	}
}

func testIdempotentPut(t *testing.T, s blockstore.Store) {
	b := NewBlock(newRand(t), 5000)
	for range 3 {
		mustPut(t, s, b)
	}
	wantBlock(t, s, b)
	wantStats(t, s, 1, 5000)
}

func testAll(t *testing.T, s blockstore.Store) {
	ctx := ctxFor(t)
	r := newRand(t)
	want := make(map[cid.Cid]bool)
	var bs []blockstore.Block
	for range 2500 { // more than one chunk of any sane implementation
		b := NewBlock(r, 8+r.IntN(32))
		bs = append(bs, b)
		want[b.CID] = true
	}
	mustPut(t, s, bs...)
	got := make(map[cid.Cid]bool)
	for c, err := range s.All(ctx) {
		if err != nil {
			t.Fatalf("All: %v", err)
		}
		if got[c] {
			t.Fatalf("All yielded %s twice", c)
		}
		got[c] = true
	}
	if len(got) != len(want) {
		t.Fatalf("All yielded %d CIDs, want %d", len(got), len(want))
	}
	for c := range want {
		if !got[c] {
			t.Fatalf("All did not yield %s", c)
		}
	}
	// Breaking out early is allowed, and the loop body may use the store.
	n := 0
	for c, err := range s.All(ctx) {
		if err != nil {
			t.Fatalf("All: %v", err)
		}
		if ok, err := s.Has(ctx, c); err != nil || !ok {
			t.Fatalf("Has(%s) inside All = %v, %v; want true, nil", c, ok, err)
		}
		if n++; n == 10 {
			break
		}
	}
	// A cancelled context ends the iteration with its error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	var last error
	for _, err := range s.All(cctx) {
		last = err
	}
	if !errors.Is(last, context.Canceled) {
		t.Fatalf("All with a cancelled context: last error %v, want context.Canceled", last)
	}
}

func testStats(t *testing.T, s blockstore.Store) {
	ctx := ctxFor(t)
	r := newRand(t)
	wantStats(t, s, 0, 0)
	a, b := NewBlock(r, 1000), NewBlock(r, 3000)
	mustPut(t, s, a, b)
	wantStats(t, s, 2, 4000)
	if err := s.Delete(ctx, a.CID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantStats(t, s, 1, 3000)
	if err := s.Delete(ctx, a.CID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantStats(t, s, 1, 3000)
}

func testOversized(t *testing.T, s blockstore.Store) {
	b := NewBlock(newRand(t), blockstore.MaxBlockSize+1)
	if err := s.Put(ctxFor(t), b); err == nil {
		t.Fatalf("Put of %d bytes: got nil error, want refusal", len(b.Data))
	}
	wantAbsent(t, s, b.CID)
	max := NewBlock(newRand(t), blockstore.MaxBlockSize)
	mustPut(t, s, max)
	wantBlock(t, s, max)
}

func testSweep(t *testing.T, s blockstore.Store) {
	ctx := ctxFor(t)
	r := newRand(t)
	kept, dropped, reput := NewBlock(r, 2000), NewBlock(r, 3000), NewBlock(r, 4000)
	mustPut(t, s, kept, dropped, reput)
	gen := s.BeginGC()
	fresh := NewBlock(r, 5000)
	mustPut(t, s, fresh, reput) // after BeginGC: both in the new generation
	st, err := s.Sweep(ctx, gen, func(c cid.Cid) bool { return c == kept.CID })
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if st.Blocks != 1 || st.Bytes != 3000 {
		t.Fatalf("Sweep stats %+v; want 1 block, 3000 bytes", st)
	}
	wantAbsent(t, s, dropped.CID)
	for _, b := range []blockstore.Block{kept, reput, fresh} {
		wantBlock(t, s, b)
	}
	wantStats(t, s, 3, 11000)

	// The next collection sees everything in older generations.
	gen2 := s.BeginGC()
	if gen2 <= gen {
		t.Fatalf("BeginGC after %d returned %d; want a larger generation", gen, gen2)
	}
	st, err = s.Sweep(ctx, gen2, func(c cid.Cid) bool { return false })
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if st.Blocks != 3 || st.Bytes != 11000 {
		t.Fatalf("second Sweep stats %+v; want 3 blocks, 11000 bytes", st)
	}
	wantStats(t, s, 0, 0)
}

func testSweepKeepsNewGeneration(t *testing.T, s blockstore.Store) {
	ctx := ctxFor(t)
	r := newRand(t)
	old := NewBlock(r, 100)
	mustPut(t, s, old)
	gen := s.BeginGC()
	newer := NewBlock(r, 100)
	mustPut(t, s, newer)
	// Sweeping an older generation than the one BeginGC returned touches
	// nothing newer than it.
	if _, err := s.Sweep(ctx, gen-1, func(cid.Cid) bool { return false }); err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	wantBlock(t, s, old)
	if _, err := s.Sweep(ctx, gen, func(cid.Cid) bool { return false }); err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	wantAbsent(t, s, old.CID)
	wantBlock(t, s, newer)
}

// testConcurrent runs writers, readers and a collector together. Live
// blocks must always read back; garbage blocks may vanish at any time.
func testConcurrent(t *testing.T, s blockstore.Store) {
	ctx := ctxFor(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	var (
		garbageMu sync.Mutex
		garbage   = make(map[cid.Cid]bool)
		liveMu    sync.Mutex
		live      []blockstore.Block
	)
	isGarbage := func(c cid.Cid) bool {
		garbageMu.Lock()
		defer garbageMu.Unlock()
		return garbage[c]
	}
	const workers, rounds = 6, 40
	stop := make(chan struct{})
	var wg, gc sync.WaitGroup
	errs := make(chan error, workers+1)
	gc.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			gen := s.BeginGC()
			if _, err := s.Sweep(ctx, gen, func(c cid.Cid) bool { return !isGarbage(c) }); err != nil {
				errs <- fmt.Errorf("Sweep: %w", err)
				return
			}
		}
	})
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			var mine []blockstore.Block
			for i := range rounds {
				a, g := NewBlock(r, 1+r.IntN(24<<10)), NewBlock(r, 1+r.IntN(24<<10))
				garbageMu.Lock()
				garbage[g.CID] = true
				garbageMu.Unlock()
				if err := s.PutMany(ctx, []blockstore.Block{a, g}); err != nil {
					errs <- fmt.Errorf("PutMany: %w", err)
					return
				}
				mine = append(mine, a)
				for _, b := range []blockstore.Block{a, mine[r.IntN(len(mine))]} {
					got, err := s.Get(ctx, b.CID)
					if err != nil || !bytes.Equal(got, b.Data) {
						errs <- fmt.Errorf("Get(%s) of a live block: %d bytes, %v", b.CID, len(got), err)
						return
					}
				}
				if i%5 == 0 {
					// Re-put an old live block, delete a garbage one.
					if err := s.Put(ctx, mine[r.IntN(len(mine))]); err != nil {
						errs <- fmt.Errorf("Put: %w", err)
						return
					}
					if err := s.Delete(ctx, g.CID); err != nil {
						errs <- fmt.Errorf("Delete: %w", err)
						return
					}
				}
			}
			liveMu.Lock()
			live = append(live, mine...)
			liveMu.Unlock()
		})
	}
	wg.Wait()
	close(stop)
	gc.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, b := range live {
		wantBlock(t, s, b)
	}
	gen := s.BeginGC()
	if _, err := s.Sweep(ctx, gen, func(c cid.Cid) bool { return !isGarbage(c) }); err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	var total int64
	for _, b := range live {
		total += int64(len(b.Data))
	}
	wantStats(t, s, int64(len(live)), total)
}

func testClosed(t *testing.T, s blockstore.Store) {
	ctx := ctxFor(t)
	b := NewBlock(newRand(t), 100)
	mustPut(t, s, b)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, blockstore.ErrClosed) {
			t.Errorf("%s after Close: got %v, want ErrClosed", op, err)
		}
	}
	_, err := s.Get(ctx, b.CID)
	check("Get", err)
	_, err = s.Has(ctx, b.CID)
	check("Has", err)
	check("Put", s.Put(ctx, b))
	check("PutMany", s.PutMany(ctx, []blockstore.Block{b}))
	check("Delete", s.Delete(ctx, b.CID))
	_, err = s.Sweep(ctx, s.BeginGC(), func(cid.Cid) bool { return false })
	check("Sweep", err)
	yielded := false
	for _, err := range s.All(ctx) {
		yielded = true
		check("All", err)
		break
	}
	if !yielded {
		t.Errorf("All after Close yielded nothing, want ErrClosed")
	}
	_ = s.Stats() // must not panic
}
