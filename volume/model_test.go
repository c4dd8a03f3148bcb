package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/weft-mesh/weft/blockstore"
)

// model is the plain in-memory truth the Manager is checked against.
type model struct {
	disks    map[string][]byte
	replicas map[string]map[string][]byte
}

func (md *model) replicaNames(disk string) []string {
	var out []string
	for name := range md.replicas[disk] {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// fakeClock advances a second per reading, so timestamp names are distinct
// and the test does not depend on the wall clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time {
	c.t = c.t.Add(time.Second)
	return c.t
}

func openTestManager(t *testing.T, dir string, store blockstore.Store, clock *fakeClock) *Manager {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Dir, cfg.Store, cfg.CommitInterval, cfg.Now = dir, store, 0, clock.now
	m, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open manager: %v", err)
	}
	return m
}

// openWithDisk opens a manager on dir and store (see openTestManager)
// holding an empty 1 MiB disk named name.
func openWithDisk(t *testing.T, dir string, store blockstore.Store, name string) *Manager {
	t.Helper()
	m := openTestManager(t, dir, store, &fakeClock{})
	if _, err := m.CreateDisk(context.Background(), DiskSpec{Name: name, Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestModel drives random sequences of write, zero, flush, commit, replica,
// restore, clone, remove, GC and restart, and after every step checks that
// every disk and every replica reads back exactly what the model says.
func TestModel(t *testing.T) {
	for run := range 6 {
		seed := rand.Uint64()
		t.Run(fmt.Sprintf("run%d", run), func(t *testing.T) {
			t.Logf("seed %d", seed)
			runModel(t, rand.New(rand.NewPCG(seed, uint64(run))), 250)
		})
	}
}

func runModel(t *testing.T, rng *rand.Rand, steps int) {
	ctx := context.Background()
	dir := t.TempDir()
	store := blockstore.NewMemory()
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := openTestManager(t, dir, store, clock)
	t.Cleanup(func() { m.Close() })
	md := &model{disks: map[string][]byte{}, replicas: map[string]map[string][]byte{}}
	names := []string{"a", "b", "c", "d"}
	const bs = 4096

	pickDisk := func() (string, bool) {
		var live []string
		for n := range md.disks {
			live = append(live, n)
		}
		if len(live) == 0 {
			return "", false
		}
		sort.Strings(live)
		return live[rng.IntN(len(live))], true
	}
	pickReplica := func() (string, string, bool) {
		var all [][2]string
		for _, d := range names {
			for _, r := range md.replicaNames(d) {
				all = append(all, [2]string{d, r})
			}
		}
		if len(all) == 0 {
			return "", "", false
		}
		p := all[rng.IntN(len(all))]
		return p[0], p[1], true
	}

	for step := range steps {
		op := rng.IntN(15)
		var desc string
		switch op {
		case 0: // create
			name := names[rng.IntN(len(names))]
			blocks := []int64{3, 17, 300}[rng.IntN(3)] // one- and two-level maps
			_, err := m.CreateDisk(ctx, DiskSpec{Name: name, Size: blocks * bs, BlockSize: bs, Replicas: 1 + rng.IntN(3)})
			desc = fmt.Sprintf("create %s (%d blocks)", name, blocks)
			if _, exists := md.disks[name]; exists {
				if !errors.Is(err, ErrExists) {
					t.Fatalf("step %d %s: got %v, want ErrExists", step, desc, err)
				}
				break
			}
			if err != nil {
				t.Fatalf("step %d %s: %v", step, desc, err)
			}
			md.disks[name] = make([]byte, blocks*bs)
		case 1, 2, 3: // write
			name, ok := pickDisk()
			if !ok {
				continue
			}
			content := md.disks[name]
			off := rng.Int64N(int64(len(content)))
			n := 1 + rng.Int64N(min(int64(len(content))-off, 3*bs))
			data := make([]byte, n)
			if rng.IntN(4) > 0 {
				for i := range data {
					data[i] = byte(rng.IntN(4)) // small alphabet: blocks repeat, exercising dedup
				}
			}
			desc = fmt.Sprintf("write %s %d+%d", name, off, n)
			h, err := m.Head(name)
			if err != nil {
				t.Fatalf("step %d %s: %v", step, desc, err)
			}
			if rng.IntN(2) == 0 {
				_, err = h.WriteAt(data, off)
			} else { // as the NBD server's spliced writes do
				desc += " (WriteFrom)"
				err = h.WriteFrom(ctx, off, n, func(dst *os.File) error {
					_, err := dst.WriteAt(data, off)
					return err
				})
			}
			if err != nil {
				t.Fatalf("step %d %s: %v", step, desc, err)
			}
			copy(content[off:], data)
		case 4: // zero
			name, ok := pickDisk()
			if !ok {
				continue
			}
			content := md.disks[name]
			off := rng.Int64N(int64(len(content)))
			n := rng.Int64N(int64(len(content)) - off + 1)
			desc = fmt.Sprintf("zero %s %d+%d", name, off, n)
			h, _ := m.Head(name)
			if err := h.Zero(ctx, off, n); err != nil {
				t.Fatalf("step %d %s: %v", step, desc, err)
			}
			clear(content[off : off+n])
		case 5: // commit or flush
			name, ok := pickDisk()
			if !ok {
				continue
			}
			desc = "commit " + name
			if _, err := m.Commit(ctx, name); err != nil {
				t.Fatalf("step %d %s: %v", step, desc, err)
			}
			h, _ := m.Head(name)
			if err := h.Flush(ctx); err != nil {
				t.Fatalf("step %d flush %s: %v", step, name, err)
			}
		case 6, 7: // replica
			name, ok := pickDisk()
			if !ok {
				continue
			}
			rname := ""
			if rng.IntN(2) == 0 {
				rname = fmt.Sprintf("r%d", rng.IntN(5))
			}
			desc = fmt.Sprintf("replica %s %q", name, rname)
			info, err := m.CreateReplica(ctx, name, rname)
			if _, exists := md.replicas[name][rname]; exists && rname != "" {
				if !errors.Is(err, ErrExists) {
					t.Fatalf("step %d %s: got %v, want ErrExists", step, desc, err)
				}
				break
			}
			if err != nil {
				t.Fatalf("step %d %s: %v", step, desc, err)
			}
			if md.replicas[name] == nil {
				md.replicas[name] = map[string][]byte{}
			}
			md.replicas[name][info.Name] = bytes.Clone(md.disks[name])
		case 8: // restore
			disk, rep, ok := pickReplica()
			if !ok {
				continue
			}
			desc = fmt.Sprintf("restore %s@%s", disk, rep)
			res, err := m.Restore(ctx, disk, rep)
			head, exists := md.disks[disk]
			switch {
			case !exists:
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("step %d %s: got %v, want ErrNotFound", step, desc, err)
				}
			case len(head) != len(md.replicas[disk][rep]):
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("step %d %s: got %v, want ErrInvalid (size differs)", step, desc, err)
				}
			case err != nil:
				t.Fatalf("step %d %s: %v", step, desc, err)
			default:
				saved := isZero(head)
				for _, r := range md.replicas[disk] {
					saved = saved || bytes.Equal(r, head)
				}
				if saved != (res.Backup == "") {
					t.Fatalf("step %d %s: backup %q, but head already saved = %v", step, desc, res.Backup, saved)
				}
				if res.Backup != "" {
					md.replicas[disk][res.Backup] = bytes.Clone(head)
				}
				md.disks[disk] = bytes.Clone(md.replicas[disk][rep])
			}
		case 9: // clone
			target := names[rng.IntN(len(names))]
			var src Ref
			var content []byte
			if d, r, ok := pickReplica(); ok && rng.IntN(2) == 0 {
				src, content = Ref{Disk: d, Replica: r}, md.replicas[d][r]
			} else if d, ok := pickDisk(); ok {
				src, content = Ref{Disk: d}, md.disks[d]
			} else {
				continue
			}
			desc = fmt.Sprintf("clone %s %s", src, target)
			_, err := m.Clone(ctx, src, target, "")
			if _, exists := md.disks[target]; exists {
				if !errors.Is(err, ErrExists) {
					t.Fatalf("step %d %s: got %v, want ErrExists", step, desc, err)
				}
				break
			}
			if err != nil {
				t.Fatalf("step %d %s: %v", step, desc, err)
			}
			md.disks[target] = bytes.Clone(content)
		case 10: // remove disk
			name, ok := pickDisk()
			if !ok {
				continue
			}
			desc = "rm " + name
			if err := m.RemoveDisk(ctx, name); err != nil {
				t.Fatalf("step %d %s: %v", step, desc, err)
			}
			delete(md.disks, name)
		case 11: // remove replica
			disk, rep, ok := pickReplica()
			if !ok {
				continue
			}
			desc = fmt.Sprintf("rm %s@%s", disk, rep)
			if err := m.RemoveReplica(ctx, disk, rep); err != nil {
				t.Fatalf("step %d %s: %v", step, desc, err)
			}
			delete(md.replicas[disk], rep)
		case 12: // gc
			desc = "gc"
			if _, err := m.GC(ctx); err != nil {
				t.Fatalf("step %d gc: %v", step, err)
			}
		case 14: // import
			name := names[rng.IntN(len(names))]
			old, exists := md.disks[name]
			n := rng.Int64N(300 * bs)
			if exists {
				n = rng.Int64N(int64(len(old)) + bs) // sometimes too long
			}
			data := make([]byte, n)
			for i := range data {
				if i/bs%3 != 0 { // leave some blocks zero
					data[i] = byte(rng.IntN(4))
				}
			}
			desc = fmt.Sprintf("import %s %d bytes", name, n)
			_, err := m.Import(ctx, DiskSpec{Name: name, BlockSize: bs}, bytes.NewReader(data))
			switch {
			case exists && n > int64(len(old)):
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("step %d %s: got %v, want ErrInvalid (longer than the disk)", step, desc, err)
				}
			case err != nil:
				t.Fatalf("step %d %s: %v", step, desc, err)
			case exists:
				clear(old)
				copy(old, data)
			default:
				content := make([]byte, max((n+bs-1)/bs*bs, bs))
				copy(content, data)
				md.disks[name] = content
			}
		case 13: // restart
			desc = "restart"
			if err := m.Close(); err != nil {
				t.Fatalf("step %d close: %v", step, err)
			}
			m = openTestManager(t, dir, store, clock)
		}
		checkModel(t, m, md, fmt.Sprintf("step %d (%s)", step, desc))
	}
	// Finally a collection must leave exactly what the live roots reach:
	// everything still reads back, and nothing unreachable survives.
	if _, err := m.GC(ctx); err != nil {
		t.Fatal(err)
	}
	checkModel(t, m, md, "final gc")
}

func checkModel(t *testing.T, m *Manager, md *model, when string) {
	t.Helper()
	ctx := context.Background()
	for name, want := range md.disks {
		h, err := m.Head(name)
		if err != nil {
			t.Fatalf("%s: disk %s: %v", when, name, err)
		}
		got := make([]byte, len(want))
		if _, err := h.ReadAt(got, 0); err != nil {
			t.Fatalf("%s: read %s: %v", when, name, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: disk %s differs from the model at byte %d", when, name, firstDiff(got, want))
		}
		checkShared(t, h, want, when+": disk "+name)
	}
	disks, err := m.ListDisks(ctx)
	if err != nil || len(disks) != len(md.disks) {
		t.Fatalf("%s: ListDisks = %d disks, %v; want %d", when, len(disks), err, len(md.disks))
	}
	for disk, reps := range md.replicas {
		for name, want := range reps {
			v, err := m.OpenView(ctx, Ref{Disk: disk, Replica: name})
			if err != nil {
				t.Fatalf("%s: view %s@%s: %v", when, disk, name, err)
			}
			got := make([]byte, len(want))
			_, err = v.ReadAt(got, 0)
			checkShared(t, v, want, when+": replica "+disk+"@"+name)
			v.Close()
			if err != nil {
				t.Fatalf("%s: read %s@%s: %v", when, disk, name, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: replica %s@%s differs from the model at byte %d", when, disk, name, firstDiff(got, want))
			}
		}
	}
}

// checkShared reads an unaligned span across blocks with ReadShared and
// compares it with the model (ReadAt has read the whole image).
func checkShared(t *testing.T, r interface {
	ReadShared(context.Context, []byte, int64) ([][]byte, error)
}, want []byte, what string) {
	t.Helper()
	off := min(int64(len(want)), 4096/2+3)
	for _, span := range [][2]int64{{off, min(int64(len(want))-off, 3*4096)}} {
		parts, err := r.ReadShared(context.Background(), make([]byte, span[1]), span[0])
		if err != nil {
			t.Fatalf("%s: ReadShared %d+%d: %v", what, span[0], span[1], err)
		}
		if got := bytes.Join(parts, nil); !bytes.Equal(got, want[span[0]:span[0]+span[1]]) {
			t.Fatalf("%s: ReadShared %d+%d differs from the model at byte %d", what, span[0], span[1], firstDiff(got, want[span[0]:]))
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
