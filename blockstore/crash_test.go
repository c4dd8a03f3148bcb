package blockstore_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/blockstore/storetest"
)

// crashDirEnv tells TestCrashChild where its store is; without it the
// child test does nothing.
const crashDirEnv = "WEFT_BLOCKSTORE_CRASH_DIR"

// TestCrash kills a child process that is putting blocks (and collecting
// garbage, so compaction runs too) at a random moment, reopens the store,
// and checks that every block the child saw acknowledged reads back
// verified. It repeats on the same directory, so later rounds also start
// from torn tails and half-finished compactions.
func TestCrash(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("in the child")
	}
	dir := t.TempDir()
	r := testRand(t)
	acked := make(map[cid.Cid]bool)
	deadline := time.Now().Add(15 * time.Second)
	for round := 0; round < 15 && time.Now().Before(deadline); round++ {
		n := crashChild(t, dir, time.Duration(r.IntN(150))*time.Millisecond, acked)
		d, err := blockstore.Open(dir, testOptions())
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		ctx := testCtx(t)
		for c := range acked {
			if _, err := d.Get(ctx, c); err != nil {
				d.Close()
				t.Fatalf("round %d: acknowledged block: %v", round, err)
			}
		}
		if st := d.Stats(); st.Blocks < int64(len(acked)) {
			t.Fatalf("round %d: Stats().Blocks = %d, want >= %d acknowledged", round, st.Blocks, len(acked))
		}
		if err := d.Close(); err != nil {
			t.Fatalf("round %d: Close: %v", round, err)
		}
		t.Logf("round %d: %d blocks acknowledged in this round, %d in all", round, n, len(acked))
	}
}

// crashChild runs TestCrashChild on dir, kills it with SIGKILL wait after
// its first acknowledgement, and adds the CIDs it acknowledged to acked.
func crashChild(t *testing.T, dir string, wait time.Duration, acked map[cid.Cid]bool) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	first := make(chan struct{})
	var once sync.Once
	n := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s, ok := strings.CutPrefix(sc.Text(), "ACK ")
			if !ok {
				continue
			}
			c, err := cid.Decode(s)
			if err != nil {
				continue // a torn line
			}
			acked[c] = true
			n++
			once.Do(func() { close(first) })
		}
	}()
	select {
	case <-first:
	case <-done:
		cmd.Wait()
		t.Fatalf("child exited before acknowledging a block")
	case <-ctx.Done():
		t.Fatalf("child acknowledged nothing in 10s")
	}
	time.Sleep(wait) // a random moment, not waiting for a state
	cmd.Process.Kill()
	<-done
	cmd.Wait()
	return n
}

// TestCrashChild is the child of TestCrash: it puts random blocks from a
// few goroutines and prints "ACK <cid>" for each acknowledged one, while a
// collector sweeps the garbage blocks it also writes, until it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("run by TestCrash")
	}
	d, err := blockstore.Open(dir, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var mu sync.Mutex
	garbage := make(map[cid.Cid]bool)
	go func() {
		for {
			gen := d.BeginGC()
			if _, err := d.Sweep(ctx, gen, func(c cid.Cid) bool {
				mu.Lock()
				defer mu.Unlock()
				return !garbage[c]
			}); err != nil {
				fmt.Fprintln(os.Stderr, "sweep:", err)
				os.Exit(2)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	for w := range 4 {
		go func() {
			r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
			for {
				var bs []blockstore.Block
				for range 1 + r.IntN(6) {
					bs = append(bs, storetest.NewBlock(r, 1+r.IntN(64<<10)))
				}
				g := storetest.NewBlock(r, 1+r.IntN(64<<10))
				mu.Lock()
				garbage[g.CID] = true
				mu.Unlock()
				if err := d.PutMany(ctx, append(bs, g)); err != nil {
					fmt.Fprintln(os.Stderr, "put:", err)
					os.Exit(2)
				}
				var sb strings.Builder
				for _, b := range bs {
					fmt.Fprintf(&sb, "ACK %s\n", b.CID)
				}
				os.Stdout.WriteString(sb.String())
			}
		}()
	}
	select {} // until killed
}
