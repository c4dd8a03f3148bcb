package iscsi

import "sync"

// Reads of at least minPooled bytes fill buffers from readBuffers rather
// than fresh ones: a fresh buffer is zeroed by the runtime and then
// garbage, which at 1 MiB per read cost as much CPU as the read itself.
const minPooled = 64 << 10

var readBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1<<20); return &b }}

// getBuffer returns a pooled buffer with room for n bytes.
func getBuffer(n int) *[]byte {
	b := readBuffers.Get().(*[]byte)
	if cap(*b) < n {
		*b = make([]byte, 0, n)
	}
	return b
}

func putBuffer(b *[]byte) {
	if cap(*b) <= maxCommandData {
		readBuffers.Put(b)
	}
}
