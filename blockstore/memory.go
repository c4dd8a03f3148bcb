package blockstore

import (
	"bytes"
	"context"
	"fmt"
	"iter"
	"sync"

	"github.com/ipfs/go-cid"
)

// Memory is a Store held in memory, for tests and simulations. It keeps
// copies of the bytes it is given and hands out copies, so callers cannot
// alter what it holds; Corrupt exists to do that on purpose.
type Memory struct {
	mu     sync.RWMutex
	blocks map[string]memEntry
	gen    uint64
	bytes  int64
	closed bool
}

type memEntry struct {
	data []byte
	gen  uint64
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{blocks: make(map[string]memEntry), gen: 1}
}

var _ Store = (*Memory)(nil)

// Get returns a copy of the block's bytes after verifying them.
func (m *Memory) Get(ctx context.Context, c cid.Cid) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	e, ok := m.blocks[c.KeyString()]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", c, ErrNotFound)
	}
	if err := Verify(c, e.data); err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	return append([]byte(nil), e.data...), nil
}

// Has reports whether the block is present.
func (m *Memory) Has(ctx context.Context, c cid.Cid) (bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return false, ErrClosed
	}
	_, ok := m.blocks[c.KeyString()]
	return ok, nil
}

// HasMany reports, for each CID in order, whether its block is present.
func (m *Memory) HasMany(ctx context.Context, cids []cid.Cid) ([]bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	out := make([]bool, len(cids))
	for i, c := range cids {
		_, out[i] = m.blocks[c.KeyString()]
	}
	return out, nil
}

// Put stores one block.
func (m *Memory) Put(ctx context.Context, b Block) error {
	return m.PutMany(ctx, []Block{b})
}

// PutMany stores blocks after checking that each one hashes to its CID.
func (m *Memory) PutMany(ctx context.Context, bs []Block) error {
	for _, b := range bs {
		if len(b.Data) > MaxBlockSize {
			return fmt.Errorf("put %s: %d bytes exceeds the %d-byte limit", b.CID, len(b.Data), MaxBlockSize)
		}
		if err := b.verify(); err != nil {
			return fmt.Errorf("put: %w", err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	for _, b := range bs {
		k := b.CID.KeyString()
		if e, ok := m.blocks[k]; ok {
			e.gen = m.gen
			if !bytes.Equal(e.data, b.Data) { // damaged (Corrupt): the block put replaces it
				e.data = append(e.data[:0], b.Data...)
			}
			m.blocks[k] = e
			continue
		}
		m.blocks[k] = memEntry{data: append([]byte(nil), b.Data...), gen: m.gen}
		m.bytes += int64(len(b.Data))
	}
	return nil
}

// Delete removes a block if present.
func (m *Memory) Delete(ctx context.Context, c cid.Cid) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if e, ok := m.blocks[c.KeyString()]; ok {
		m.bytes -= int64(len(e.data))
		delete(m.blocks, c.KeyString())
	}
	return nil
}

// All yields every CID present when the iteration starts.
func (m *Memory) All(ctx context.Context) iter.Seq2[cid.Cid, error] {
	return func(yield func(cid.Cid, error) bool) {
		m.mu.RLock()
		keys := make([]string, 0, len(m.blocks))
		for k := range m.blocks {
			keys = append(keys, k)
		}
		closed := m.closed
		m.mu.RUnlock()
		if closed {
			yield(cid.Undef, ErrClosed)
			return
		}
		for _, k := range keys {
			if err := ctx.Err(); err != nil {
				yield(cid.Undef, err)
				return
			}
			c, err := cid.Cast([]byte(k))
			if !yield(c, err) {
				return
			}
		}
	}
}

// BeginGC starts a new generation and returns the previous one.
func (m *Memory) BeginGC() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	return m.gen - 1
}

// Sweep deletes blocks of generation <= gen that keep rejects.
func (m *Memory) Sweep(ctx context.Context, gen uint64, keep func(cid.Cid) bool) (SweepStats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var st SweepStats
	if m.closed {
		return st, ErrClosed
	}
	for k, e := range m.blocks {
		if e.gen > gen {
			continue
		}
		c, err := cid.Cast([]byte(k))
		if err != nil {
			return st, fmt.Errorf("sweep: stored key: %w", err)
		}
		if keep(c) {
			continue
		}
		delete(m.blocks, k)
		m.bytes -= int64(len(e.data))
		st.Blocks++
		st.Bytes += int64(len(e.data))
		st.Reclaimed += int64(len(e.data))
	}
	return st, nil
}

// Stats returns the store's accounting.
func (m *Memory) Stats() Stats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return Stats{Blocks: int64(len(m.blocks)), Bytes: m.bytes, DiskBytes: m.bytes}
}

// Corrupt flips one byte of a stored block, for tests of corruption
// handling. It reports whether the block was present.
func (m *Memory) Corrupt(c cid.Cid) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.blocks[c.KeyString()]
	if ok && len(e.data) > 0 {
		e.data[len(e.data)/2] ^= 0xff
	}
	return ok
}

// Close releases the store; later calls fail with ErrClosed.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
