// Package memstat measures the heap for tests that bound what an input or
// an attack makes a process hold.
package memstat

import "runtime"

// LiveHeap collects garbage and returns the bytes of heap objects still
// reachable: what the process holds, not what it allocated.
func LiveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
