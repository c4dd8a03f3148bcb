package volume

import (
	"container/list"
	"sync"
)

// blockCache keeps recently read, already verified data blocks in memory,
// bounded by their total size. Blocks are immutable, so entries never go
// stale. Safe for concurrent use.
type blockCache struct {
	mu    sync.Mutex
	limit int64
	size  int64
	order *list.List // front: most recently used; values are *cacheEntry
	byKey map[string]*list.Element
}

type cacheEntry struct {
	key  string
	data []byte
}

func newBlockCache(limit int64) *blockCache {
	return &blockCache{limit: limit, order: list.New(), byKey: map[string]*list.Element{}}
}

// get returns the cached block, which the caller must not modify.
func (c *blockCache) get(key string) ([]byte, bool) {
	if c.limit <= 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byKey[key]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*cacheEntry).data, true
}

// add caches data, which the caller must not modify afterwards.
func (c *blockCache) add(key string, data []byte) {
	if int64(len(data)) > c.limit/8 { // never let one block flush the cache
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byKey[key]; ok {
		return
	}
	c.byKey[key] = c.order.PushFront(&cacheEntry{key: key, data: data})
	c.size += int64(len(data))
	for c.size > c.limit {
		last := c.order.Back()
		ent := last.Value.(*cacheEntry)
		c.order.Remove(last)
		delete(c.byKey, ent.key)
		c.size -= int64(len(ent.data))
	}
}
