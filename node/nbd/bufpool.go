package nbd

import (
	"math/bits"
	"sync"
)

// Payload buffers come from one pool per power-of-two size from 4 KiB to
// MaxPayload, so steady traffic allocates nothing.
const (
	minPoolShift = 12
	maxPoolShift = 25 // MaxPayload
)

var pools [maxPoolShift - minPoolShift + 1]sync.Pool

func poolIndex(n int) int {
	if n <= 1<<minPoolShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minPoolShift
}

// getBuf returns a buffer of length n <= MaxPayload.
func getBuf(n int) *[]byte {
	i := poolIndex(n)
	if b, ok := pools[i].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<(i+minPoolShift))
	return &b
}

func putBuf(b *[]byte) {
	c := cap(*b)
	if c&(c-1) != 0 || c < 1<<minPoolShift || c > MaxPayload {
		return
	}
	pools[poolIndex(c)].Put(b)
}
