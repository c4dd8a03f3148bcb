package volume

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/weft-mesh/weft/blockstore"
)

// TestConcurrentWritersShareBlocks has several writers, each owning every
// Gth 512-byte sector of a disk, so that they keep writing parts of the same
// blocks (read-modify-write) at once, while another goroutine commits,
// flushes and zeroes nothing it does not own, and a reader reads. Every
// writer's last bytes must survive: a read-modify-write racing another
// write of the same block would bring back stale bytes.
func TestConcurrentWritersShareBlocks(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.Dir, cfg.Store, cfg.CommitInterval = t.TempDir(), blockstore.NewMemory(), 0
	m, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const bs, blocks, sector, writers = 4096, 32, 512, 4
	if _, err := m.CreateDisk(ctx, DiskSpec{Name: "d", Size: bs * blocks, BlockSize: bs}); err != nil {
		t.Fatal(err)
	}
	h, _ := m.Head("d")
	// The disk starts committed with data, so partial writes must copy.
	initial := bytes.Repeat([]byte{0xee}, bs*blocks)
	h.WriteAt(initial, 0)
	if _, err := m.Commit(ctx, "d"); err != nil {
		t.Fatal(err)
	}

	want := bytes.Clone(initial)
	var wantMu sync.Mutex
	stop := make(chan struct{})
	errc := make(chan error, writers+2)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			for n := range 3000 {
				s := int64(rng.IntN(blocks*bs/sector/writers)*writers + g) // a sector g owns
				data := bytes.Repeat([]byte{byte(g*50 + n%50 + 1)}, sector)
				if _, err := h.WriteAt(data, s*sector); err != nil {
					errc <- err
					return
				}
				wantMu.Lock()
				copy(want[s*sector:], data)
				wantMu.Unlock()
			}
		}()
	}
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { // committer and flusher
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := m.Commit(ctx, "d"); err != nil {
				errc <- err
				return
			}
			if err := h.Flush(ctx); err != nil {
				errc <- err
				return
			}
		}
	}()
	go func() { // reader: every sector holds some value its owner wrote
		defer bg.Done()
		buf := make([]byte, bs*blocks)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := h.ReadAt(buf, 0); err != nil {
				errc <- err
				return
			}
			for s := 0; s < len(buf)/sector; s++ {
				sec := buf[s*sector : (s+1)*sector]
				if sec[0] != 0xee && (int(sec[0])-1)/50 != s%writers {
					errc <- fmt.Errorf("sector %d holds a value of writer %d", s, (int(sec[0])-1)/50)
					return
				}
				if !bytes.Equal(sec, bytes.Repeat(sec[:1], sector)) {
					errc <- fmt.Errorf("sector %d is torn", s)
					return
				}
			}
		}
	}()
	wg.Wait()
	close(stop)
	bg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	for round, commit := range []bool{false, true} {
		if commit {
			if _, err := m.Commit(ctx, "d"); err != nil {
				t.Fatal(err)
			}
		}
		got := make([]byte, len(want))
		if _, err := h.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: disk differs from what the writers wrote at byte %d", round, firstDiff(got, want))
		}
	}
}
