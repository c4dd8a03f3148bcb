package datapath

import (
	"context"
	"testing"

	"github.com/weft-mesh/weft/blockstore"
)

// BenchmarkPull64MiB pulls a 64 MiB disk of 64 KiB blocks, without holes,
// over memnet into an empty store.
func BenchmarkPull64MiB(b *testing.B) {
	rng := newRand(b)
	net := newTestNet(b)
	src := net.add("src", nil)
	net.add("dst", nil)
	const size = 64 << 10
	d := writeDisk(b, rng, src, 1024, size, 0)
	b.SetBytes(int64(len(d.held) * size))
	spec := Spec{ID: "bench", Root: d.root, Sources: []string{"src"}, DiskBlockSize: size}
	for b.Loop() {
		b.StopTimer()
		dst := blockstore.NewMemory()
		b.StartTimer()
		if _, err := Start(context.Background(), spec, net.clients["dst"], dst, nil).Wait(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		dst.Close()
		b.StartTimer()
	}
}
