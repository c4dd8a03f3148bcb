package volume_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/volume"
)

// crashDirEnv tells TestHeadCrashChild where its node lives; without it the
// child test does nothing.
const crashDirEnv = "WEFT_VOLUME_CRASH_DIR"

const (
	crashBS     = 4096
	crashBlocks = 1024 // a two-level map
)

// crashBlock is a block holding val, so a read tells which write it saw.
func crashBlock(val uint64) []byte {
	b := make([]byte, crashBS)
	if val == 0 {
		return b
	}
	for i := 0; i < crashBS; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], val)
	}
	return b
}

func openCrashNode(dir string, commitEvery time.Duration) (*blockstore.Disk, *volume.Manager, error) {
	opts := blockstore.DefaultOptions()
	opts.MinFreeBytes = 0
	opts.SegmentSize = 1 << 20 // rotate and compact often
	store, err := blockstore.Open(filepath.Join(dir, "blocks"), opts)
	if err != nil {
		return nil, nil, err
	}
	cfg := volume.DefaultConfig()
	cfg.Dir, cfg.Store, cfg.CommitInterval = filepath.Join(dir, "volumes"), store, commitEvery
	m, err := volume.Open(context.Background(), cfg)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	return store, m, nil
}

// TestHeadCrash kills a child that writes, flushes, commits (also in the
// background), takes and removes replicas and collects garbage, at random
// moments, many times over the same directory. After each kill the node
// must reopen, every block must hold its last flushed value or a value
// written after that flush (never anything else, never a zero it did not
// write), and every replica must read back exactly as it was taken.
func TestHeadCrash(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("in the child")
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	durable := make([]uint64, crashBlocks)          // value as of the last flush
	pending := make([]map[uint64]bool, crashBlocks) // values written since
	replicas := map[string][]uint64{}               // exact content
	removing := map[string]bool{}                   // removal started
	for round := range 12 {
		runCrashChild(t, dir, time.Duration(20+rng.IntN(200))*time.Millisecond, durable, pending, replicas, removing)
		store, m, err := openCrashNode(dir, 0)
		if err != nil {
			t.Fatalf("round %d: reopen after kill -9: %v", round, err)
		}
		ctx := context.Background()
		h, err := m.Head("d")
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		buf := make([]byte, crashBS)
		for i := range crashBlocks {
			if _, err := h.ReadAt(buf, int64(i)*crashBS); err != nil {
				t.Fatalf("round %d: read block %d: %v", round, i, err)
			}
			got := binary.LittleEndian.Uint64(buf)
			if string(buf) != string(crashBlock(got)) {
				t.Fatalf("round %d: block %d is torn or foreign: starts with %d", round, i, got)
			}
			if got != durable[i] && !pending[i][got] {
				t.Fatalf("round %d: block %d holds %d; last flushed %d, written since %v", round, i, got, durable[i], pending[i])
			}
			durable[i], pending[i] = got, nil
		}
		for name, want := range replicas {
			v, err := m.OpenView(ctx, volume.Ref{Disk: "d", Replica: name})
			if err != nil {
				if removing[name] {
					delete(replicas, name)
					continue
				}
				t.Fatalf("round %d: replica %s: %v", round, name, err)
			}
			for i, val := range want {
				if _, err := v.ReadAt(buf, int64(i)*crashBS); err != nil || string(buf) != string(crashBlock(val)) {
					t.Fatalf("round %d: replica %s block %d: err %v, want value %d", round, name, i, err, val)
				}
			}
			v.Close()
		}
		if _, err := m.GC(ctx); err != nil {
			t.Fatalf("round %d: gc after reopen: %v", round, err)
		}
		if err := m.Close(); err != nil {
			t.Fatalf("round %d: close: %v", round, err)
		}
		if err := store.Close(); err != nil {
			t.Fatalf("round %d: close store: %v", round, err)
		}
	}
}

// runCrashChild runs the child for about wait, SIGKILLs it, and folds what
// it reported into the expectations.
func runCrashChild(t *testing.T, dir string, wait time.Duration, durable []uint64, pending []map[uint64]bool, replicas map[string][]uint64, removing map[string]bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHeadCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, "WEFT_CRASH_SEED="+strconv.FormatUint(rand.Uint64(), 10))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The kill clock starts once the child has its disk ("ready"), so a
	// slow start (the race detector) cannot leave a round with no disk.
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	current := append([]uint64(nil), durable...) // last written value per block
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "ready":
			timer = time.AfterFunc(wait, func() { cmd.Process.Kill() })
		case "W": // a write returned
			i, _ := strconv.Atoi(f[1])
			val, _ := strconv.ParseUint(f[2], 10, 64)
			if pending[i] == nil {
				pending[i] = map[uint64]bool{}
			}
			pending[i][val] = true
			current[i] = val
		case "F": // a flush or commit returned: everything written is durable
			for i := range durable {
				durable[i], pending[i] = current[i], nil
			}
		case "R": // a replica was taken: it holds every write that returned
			replicas[f[1]] = append([]uint64(nil), current...)
			for i := range durable {
				durable[i], pending[i] = current[i], nil
			}
		case "X": // removal of a replica is starting
			removing[f[1]] = true
		}
	}
	cmd.Wait() // killed: the error is expected
}

// TestHeadCrashChild is the process TestHeadCrash kills.
func TestHeadCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("only runs as TestHeadCrash's child")
	}
	seed, _ := strconv.ParseUint(os.Getenv("WEFT_CRASH_SEED"), 10, 64)
	rng := rand.New(rand.NewPCG(seed, 1))
	_, m, err := openCrashNode(dir, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := m.CreateDisk(ctx, volume.DiskSpec{Name: "d", Size: crashBlocks * crashBS, BlockSize: crashBS}); err != nil && !strings.Contains(err.Error(), "exists") {
		t.Fatal(err)
	}
	h, err := m.Head("d")
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(os.Stdout)
	say := func(format string, args ...any) {
		fmt.Fprintf(w, format+"\n", args...)
		w.Flush()
	}
	var replicas []string
	say("ready")
	for {
		switch op := rng.IntN(100); {
		case op < 75:
			i := rng.IntN(crashBlocks)
			val := rng.Uint64()
			if rng.IntN(10) == 0 {
				val = 0 // zero blocks leave the map
			}
			if _, err := h.WriteAt(crashBlock(val), int64(i)*crashBS); err != nil {
				t.Fatal(err)
			}
			say("W %d %d", i, val)
		case op < 85:
			if err := h.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			say("F")
		case op < 90:
			if _, err := m.Commit(ctx, "d"); err != nil {
				t.Fatal(err)
			}
			say("F")
		case op < 94:
			name := fmt.Sprintf("r%d", rng.Uint32())
			if _, err := m.CreateReplica(ctx, "d", name); err != nil {
				t.Fatal(err)
			}
			replicas = append(replicas, name)
			say("R %s", name)
		case op < 97 && len(replicas) > 0:
			name := replicas[0]
			replicas = replicas[1:]
			say("X %s", name)
			if err := m.RemoveReplica(ctx, "d", name); err != nil {
				t.Fatal(err)
			}
		default:
			if _, err := m.GC(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}
