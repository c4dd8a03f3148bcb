package volume

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
)

// TestGCConcurrentWithCommits runs collections back to back while one
// goroutine writes, commits, takes and drops replicas, and another reads
// views of replicas that are removed under it. Nothing reachable (or held
// by an open view) may ever go missing.
func TestGCConcurrentWithCommits(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	ctx := context.Background()
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var clockMu sync.Mutex
	cfg := DefaultConfig()
	cfg.Dir, cfg.Store, cfg.CommitInterval = t.TempDir(), blockstore.NewMemory(), 0
	cfg.Now = func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock.now() }
	m, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const bs, blocks = 4096, 64
	if _, err := m.CreateDisk(ctx, DiskSpec{Name: "d", Size: bs * blocks, BlockSize: bs}); err != nil {
		t.Fatal(err)
	}
	h, _ := m.Head("d")

	var mu sync.Mutex
	replicas := map[string][]byte{} // name -> content
	stop := make(chan struct{})
	errc := make(chan error, 3)
	var wg sync.WaitGroup

	wg.Add(1)
	go func() { // writer
		defer wg.Done()
		defer close(stop)
		rng := rand.New(rand.NewPCG(seed, 1))
		content := make([]byte, bs*blocks)
		for i := range 400 {
			off := rng.Int64N(blocks) * bs
			data := bytes.Repeat([]byte{byte(rng.IntN(8))}, bs) // few distinct blocks: dedup against garbage
			if _, err := h.WriteAt(data, off); err != nil {
				errc <- err
				return
			}
			copy(content[off:], data)
			switch rng.IntN(6) {
			case 0:
				if _, err := m.Commit(ctx, "d"); err != nil {
					errc <- err
					return
				}
			case 1:
				name := fmt.Sprintf("r%d", i)
				if _, err := m.CreateReplica(ctx, "d", name); err != nil {
					errc <- err
					return
				}
				mu.Lock()
				replicas[name] = bytes.Clone(content)
				mu.Unlock()
			case 2:
				mu.Lock()
				for name := range replicas {
					if err := m.RemoveReplica(ctx, "d", name); err != nil {
						mu.Unlock()
						errc <- err
						return
					}
					delete(replicas, name)
					break
				}
				mu.Unlock()
			}
		}
		got := make([]byte, len(content))
		if _, err := h.ReadAt(got, 0); err != nil || !bytes.Equal(got, content) {
			errc <- fmt.Errorf("head differs after the run (read err %v)", err)
		}
	}()
	wg.Add(1)
	go func() { // collector
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := m.GC(ctx); err != nil {
				errc <- err
				return
			}
		}
	}()
	wg.Add(1)
	go func() { // reader of replicas that may be removed while open
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			var name string
			var want []byte
			for n, c := range replicas {
				name, want = n, c
				break
			}
			mu.Unlock()
			if name == "" {
				continue
			}
			v, err := m.OpenView(ctx, Ref{Disk: "d", Replica: name})
			if err != nil {
				continue // removed between the pick and the open
			}
			got := make([]byte, len(want))
			_, err = v.ReadAt(got, 0)
			v.Close()
			if err != nil || !bytes.Equal(got, want) {
				errc <- fmt.Errorf("replica %s: read err %v, equal %v", name, err, bytes.Equal(got, want))
				return
			}
		}
	}()
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for name, want := range replicas {
		v, err := m.OpenView(ctx, Ref{Disk: "d", Replica: name})
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want))
		if _, err := v.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("replica %s after the run: err %v, equal %v", name, err, bytes.Equal(got, want))
		}
		v.Close()
	}
}

// TestGCReclaimsUnreachable checks the other half: blocks no root reaches
// are freed, and only those.
func TestGCReclaimsUnreachable(t *testing.T) {
	ctx := context.Background()
	store := blockstore.NewMemory()
	m := openTestManager(t, t.TempDir(), store, &fakeClock{})
	defer m.Close()
	const bs = 4096
	if _, err := m.CreateDisk(ctx, DiskSpec{Name: "d", Size: 8 * bs, BlockSize: bs}); err != nil {
		t.Fatal(err)
	}
	h, _ := m.Head("d")
	h.WriteAt(bytes.Repeat([]byte{1}, 8*bs), 0)
	if _, err := m.CreateReplica(ctx, "d", "one"); err != nil {
		t.Fatal(err)
	}
	h.WriteAt(bytes.Repeat([]byte{2}, 8*bs), 0)
	if _, err := m.Commit(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	// Two distinct data blocks and two one-leaf maps.
	if got := store.Stats().Blocks; got != 4 {
		t.Fatalf("stored blocks = %d, want 4", got)
	}
	st, err := m.GC(ctx)
	if err != nil || st.SweptBlocks != 0 {
		t.Fatalf("gc with everything reachable swept %d blocks (err %v), want 0", st.SweptBlocks, err)
	}
	if err := m.RemoveReplica(ctx, "d", "one"); err != nil {
		t.Fatal(err)
	}
	st, err = m.GC(ctx)
	if err != nil || st.SweptBlocks != 2 {
		t.Fatalf("gc after removing the replica swept %d blocks (err %v), want 2", st.SweptBlocks, err)
	}
	if got := store.Stats().Blocks; got != 2 {
		t.Fatalf("stored blocks after gc = %d, want 2", got)
	}
	if err := m.RemoveDisk(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if got := store.Stats().Blocks; got != 0 {
		t.Fatalf("stored blocks after removing everything = %d, want 0", got)
	}
}

// TestDropUnreachable: of the blocks it is given, DropUnreachable deletes
// those no live root reaches and keeps the others, given or not.
func TestDropUnreachable(t *testing.T) {
	ctx := context.Background()
	store := blockstore.NewMemory()
	m := openTestManager(t, t.TempDir(), store, &fakeClock{})
	defer m.Close()
	const bs = 4096
	if _, err := m.CreateDisk(ctx, DiskSpec{Name: "d", Size: 8 * bs, BlockSize: bs}); err != nil {
		t.Fatal(err)
	}
	h, _ := m.Head("d")
	old, live := bytes.Repeat([]byte{1}, bs), bytes.Repeat([]byte{2}, bs)
	h.WriteAt(old, 0)
	if _, err := m.Commit(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	h.WriteAt(live, 0)
	if _, err := m.Commit(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	garbage := blockstore.Sum(blockstore.CodecRaw, old)
	reachable := blockstore.Sum(blockstore.CodecRaw, live)
	other := blockstore.NewBlock(blockstore.CodecRaw, []byte("not asked about"))
	if err := store.Put(ctx, other); err != nil {
		t.Fatal(err)
	}
	dropped, err := m.DropUnreachable(ctx, []cid.Cid{garbage, reachable})
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 1 || !dropped[0].Equals(garbage) {
		t.Fatalf("dropped %v, want only the overwritten block %s", dropped, garbage)
	}
	for c, want := range map[cid.Cid]bool{garbage: false, reachable: true, other.CID: true} {
		if ok, _ := store.Has(ctx, c); ok != want {
			t.Fatalf("has %s after DropUnreachable: %v, want %v", c, ok, want)
		}
	}
}
