package exchange_test

import (
	"context"
	"testing"

	"github.com/weft-mesh/weft/blockstore"
)

// BenchmarkGet measures Get throughput of 64 KiB blocks over an in-memory
// pipe: framing, CBOR, the pipe copies and BLAKE3 verification on both
// sides (the store verifies on read, the client on receipt).
func BenchmarkGet(b *testing.B) {
	const blockSize = 64 << 10
	blocks := benchBlocks(256, blockSize) // 16 MiB: one full response per Get
	store := blockstore.NewMemory()
	if err := store.PutMany(context.Background(), blocks); err != nil {
		b.Fatalf("PutMany: %v", err)
	}
	p := newPair(b, store)
	cids := cidsOf(blocks)
	b.SetBytes(int64(len(blocks) * blockSize))
	b.ResetTimer()
	for b.Loop() {
		got, err := p.client.Get(context.Background(), "b", cids)
		if err != nil {
			b.Fatalf("Get: %v", err)
		}
		if len(got) != len(blocks) {
			b.Fatalf("got %d blocks, want %d", len(got), len(blocks))
		}
	}
}

func benchBlocks(n, size int) []blockstore.Block {
	out := make([]blockstore.Block, n)
	for i := range out {
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(i*31 + j*7)
		}
		out[i] = blockstore.NewBlock(blockstore.CodecRaw, data)
	}
	return out
}
