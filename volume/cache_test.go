package volume

import (
	"fmt"
	"testing"
)

func TestBlockCacheEvictsBySize(t *testing.T) {
	c := newBlockCache(100)
	for i := range 20 {
		c.add(fmt.Sprint(i), make([]byte, 10))
	}
	if c.size > 100 {
		t.Fatalf("cache holds %d bytes, limit 100", c.size)
	}
	if _, ok := c.get("0"); ok {
		t.Fatal("oldest entry still cached after 200 bytes went in")
	}
	if _, ok := c.get("19"); !ok {
		t.Fatal("newest entry not cached")
	}
	c.get("10") // touch: now most recent
	for i := 20; i < 29; i++ {
		c.add(fmt.Sprint(i), make([]byte, 10))
	}
	if _, ok := c.get("10"); !ok {
		t.Fatal("recently used entry evicted before older ones")
	}
	c.add("big", make([]byte, 50)) // over limit/8: not cached
	if _, ok := c.get("big"); ok {
		t.Fatal("a block larger than an eighth of the cache was cached")
	}
}
