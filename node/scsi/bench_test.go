package scsi

import (
	"context"
	"testing"
)

// BenchmarkExecute measures what the command layer costs on top of the
// backend: CDB validation, range checks, the data-in buffer. The backend
// is in memory, so the figure is the layer's ceiling, to set beside
// memcpy and the network.
func BenchmarkExecute(b *testing.B) {
	for _, c := range []struct {
		name   string
		blocks uint16
		write  bool
		lend   bool // the transport lends a buffer for the data-in
	}{
		{"read-4KiB", 8, false, false}, {"read-64KiB", 128, false, false}, {"read-1MiB", 2048, false, false},
		{"read-64KiB-lent-buffer", 128, false, true}, {"read-1MiB-lent-buffer", 2048, false, true},
		{"write-4KiB", 8, true, false}, {"write-64KiB", 128, true, false}, {"write-1MiB", 2048, true, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			l := NewLU(newMem(16<<20, testBlockSize), LUInfo{})
			op, out := byte(opRead10), []byte(nil)
			if c.write {
				op, out = opWrite10, pattern(int(c.blocks)*LogicalBlockSize, 1)
			}
			size := int(c.blocks) * LogicalBlockSize
			b.SetBytes(int64(size))
			ctx := context.Background()
			span := uint32(16<<20/LogicalBlockSize) - uint32(c.blocks)
			var lba uint32
			var buf []byte
			if c.lend {
				buf = make([]byte, size)
			}
			for b.Loop() {
				r := l.Execute(ctx, Command{CDB: cdb10(op, 0, lba, c.blocks), DataOut: out, AllocLen: size, Buffer: buf})
				if r.Status != StatusGood {
					b.Fatalf("sense %x", r.Sense)
				}
				lba = (lba + uint32(c.blocks)) % span
			}
		})
	}
}
