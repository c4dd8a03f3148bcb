package blockstore_test

import (
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
)

const (
	benchBlockSize = 64 << 10
	benchBatch     = 16 // blocks per PutMany: 1 MiB
)

// benchBlocks returns n distinct random blocks of benchBlockSize bytes.
func benchBlocks(b *testing.B, n int) []blockstore.Block {
	b.Helper()
	r := rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16)})
	bs := make([]blockstore.Block, n)
	for i := range bs {
		data := make([]byte, benchBlockSize)
		r.Read(data)
		bs[i] = blockstore.NewBlock(blockstore.CodecRaw, data)
	}
	return bs
}

func benchDisk(b *testing.B) *blockstore.Disk {
	b.Helper()
	d, err := blockstore.Open(b.TempDir(), blockstore.DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	return d
}

// BenchmarkPutMany measures durable puts of new 64 KiB blocks in 1 MiB
// batches (hash verification, segment write, fsync, index commit): one
// writer, and GOMAXPROCS writers whose fsyncs and commits are shared.
func BenchmarkPutMany(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		bs := benchBlocks(b, b.N*benchBatch)
		d := benchDisk(b)
		ctx := b.Context()
		b.SetBytes(benchBatch * benchBlockSize)
		b.ResetTimer()
		for i := range b.N {
			if err := d.PutMany(ctx, bs[i*benchBatch:(i+1)*benchBatch]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		bs := benchBlocks(b, b.N*benchBatch)
		d := benchDisk(b)
		ctx := b.Context()
		var next atomic.Int64
		b.SetBytes(benchBatch * benchBlockSize)
		b.SetParallelism(4) // I/O bound: more writers than cores
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := int(next.Add(1) - 1)
				if err := d.PutMany(ctx, bs[i*benchBatch:(i+1)*benchBatch]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkGet measures verified reads of 64 KiB blocks (from the page
// cache: 64 MiB of blocks).
func BenchmarkGet(b *testing.B) {
	bs := benchBlocks(b, 1024)
	d := benchDisk(b)
	ctx := b.Context()
	for i := 0; i < len(bs); i += benchBatch {
		if err := d.PutMany(ctx, bs[i:i+benchBatch]); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("serial", func(b *testing.B) {
		b.SetBytes(benchBlockSize)
		for i := range b.N {
			if _, err := d.Get(ctx, bs[i%len(bs)].CID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		var next atomic.Int64
		b.SetBytes(benchBlockSize)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := d.Get(ctx, bs[int(next.Add(1))%len(bs)].CID); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkVerify measures what checking a 64 KiB block against its CID
// costs (BLAKE3-256), on one core and on every core: every read of a block
// from disk pays it, so it bounds how fast a node reads data it has not
// cached.
func BenchmarkVerify(b *testing.B) {
	blk := benchBlocks(b, 1)[0]
	b.Run("serial", func(b *testing.B) {
		b.SetBytes(benchBlockSize)
		for b.Loop() {
			if err := blockstore.Verify(blk.CID, blk.Data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetBytes(benchBlockSize)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := blockstore.Verify(blk.CID, blk.Data); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkHas measures the presence check of a heal pass: 16384 blocks,
// half of them present, asked one at a time (Has) or all at once
// (HasMany). One op is the whole round.
func BenchmarkHas(b *testing.B) {
	const n = 16384
	r := rand.NewChaCha8([32]byte{7})
	cids := make([]cid.Cid, n)
	var present []blockstore.Block
	for i := range cids {
		data := make([]byte, 64)
		r.Read(data)
		blk := blockstore.NewBlock(blockstore.CodecRaw, data)
		cids[i] = blk.CID
		if i%2 == 0 {
			present = append(present, blk)
		}
	}
	d := benchDisk(b)
	if err := d.PutMany(b.Context(), present); err != nil {
		b.Fatal(err)
	}
	b.Run("Has", func(b *testing.B) {
		for b.Loop() {
			for _, c := range cids {
				if _, err := d.Has(b.Context(), c); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("HasMany", func(b *testing.B) {
		for b.Loop() {
			if _, err := d.HasMany(b.Context(), cids); err != nil {
				b.Fatal(err)
			}
		}
	})
}
