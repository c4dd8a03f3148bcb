package volume

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/weft-mesh/weft/blockstore"
)

func openBenchManager(b *testing.B) *Manager {
	b.Helper()
	store, err := blockstore.Open(b.TempDir(), blockstore.DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	cfg := DefaultConfig()
	cfg.Dir, cfg.Store, cfg.CommitInterval = b.TempDir(), store, 0
	m, err := Open(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

// BenchmarkImport streams 256 MiB of random data into a new disk each
// iteration: hashing, storing and building the map.
func BenchmarkImport(b *testing.B) {
	m := openBenchManager(b)
	data := make([]byte, 1<<30)
	rand.Read(data)
	b.SetBytes(int64(len(data)))
	for i := 0; b.Loop(); i++ {
		data[0] = byte(i) // a new first block each time: not all dedup
		rand.Read(data[:1<<20])
		if _, err := m.Import(context.Background(), DiskSpec{Name: "bench"}, bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		m.RemoveDisk(context.Background(), "bench")
		m.GC(context.Background())
		b.StartTimer()
	}
}

// BenchmarkCommit writes 64 MiB through the head and commits it.
func BenchmarkCommit(b *testing.B) {
	m := openBenchManager(b)
	ctx := context.Background()
	if _, err := m.CreateDisk(ctx, DiskSpec{Name: "d", Size: 64 << 20}); err != nil {
		b.Fatal(err)
	}
	h, _ := m.Head("d")
	data := make([]byte, 64<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		b.StopTimer()
		rand.Read(data)
		h.WriteAt(data, 0)
		b.StartTimer()
		if _, err := m.Commit(ctx, "d"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReplicaCreate takes a replica of a disk with one dirty block,
// for a 1 GiB and a 1 TiB disk: the time must not depend on the size.
func BenchmarkReplicaCreate(b *testing.B) {
	for _, size := range []struct {
		name  string
		bytes int64
	}{{"1GiB", 1 << 30}, {"1TiB", 1 << 40}} {
		b.Run(size.name, func(b *testing.B) {
			m := openBenchManager(b)
			ctx := context.Background()
			if _, err := m.CreateDisk(ctx, DiskSpec{Name: "d", Size: size.bytes}); err != nil {
				b.Fatal(err)
			}
			h, _ := m.Head("d")
			block := make([]byte, DefaultBlockSize)
			start := time.Now()
			for i := 0; b.Loop(); i++ {
				block[0] = byte(i)
				h.WriteAt(block, int64(i%1000)*size.bytes/1000)
				if _, err := m.CreateReplica(ctx, "d", ""); err != nil {
					b.Fatal(err)
				}
			}
			_ = start
		})
	}
}

// BenchmarkExport reads every block of a 256 MiB disk in order, verified,
// as `weft disk export` does.
func BenchmarkExport(b *testing.B) {
	m := openBenchManager(b)
	ctx := context.Background()
	data := make([]byte, 256<<20)
	rand.Read(data)
	if _, err := m.Import(ctx, DiskSpec{Name: "d"}, bytes.NewReader(data)); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		v, err := m.OpenView(ctx, Ref{Disk: "d"})
		if err != nil {
			b.Fatal(err)
		}
		bufs := NewBlockBuffers(64)
		if err := v.ForEachBlock(ctx, bufs, func(_ int64, p []byte) error { bufs.Put(p); return nil }); err != nil {
			b.Fatal(err)
		}
		v.Close()
	}
}
