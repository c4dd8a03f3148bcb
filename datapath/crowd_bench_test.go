package datapath

import (
	"context"
	"strconv"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
)

// benchCrowd is a crowd of members missing blocks blocks of 64 KiB, the
// view already read.
func benchCrowd(b *testing.B, blocks int, members ...string) *crowd {
	b.Helper()
	missing := make([]cid.Cid, blocks)
	ordinals := make([]int, blocks)
	for i := range missing {
		missing[i] = blockstore.Sum(blockstore.CodecRaw, []byte(strconv.Itoa(i)))
		ordinals[i] = i
	}
	spec := Spec{Sources: []string{"src"}, Self: members[0], Crowd: newTestCrowd(members...),
		BlockSize: DefaultBlockSize, DiskBlockSize: 64 << 10, Concurrency: 4}
	c := newCrowd(&fetcher{thresholds: spec.withDefaults().Thresholds}, spec, missing, ordinals)
	c.runCtx = b.Context()
	c.aloneCtx, c.aloneCancel = context.WithCancel(c.runCtx)
	c.follow(members)
	return c
}

// BenchmarkCrowdClaim claims a batch and lands it, as a receiver does for
// every request, with 1M blocks missing (64 GiB of 64 KiB blocks): from a
// member of four (claimFrom), and alone (takeOwn). The cost of a claim
// must not grow with the blocks missing; only a change of the members
// alive costs a walk of them all (rebuild).
func BenchmarkCrowdClaim(b *testing.B) {
	const blocks = 1 << 20
	b.Run("member", func(b *testing.B) {
		c := benchCrowd(b, blocks, "r0", "r1", "r2", "r3")
		b.ResetTimer()
		for range b.N {
			batch, _, _ := c.claimFrom("r1")
			if len(batch) == 0 {
				b.StopTimer()
				c = benchCrowd(b, blocks, "r0", "r1", "r2", "r3")
				b.StartTimer()
				continue
			}
			c.landed(batch, stored(batch), "r1")
		}
	})
	// A member failing a request (or coming back) changes the members
	// alive: every missing block goes to its owner again, once.
	b.Run("rebuild", func(b *testing.B) {
		c := benchCrowd(b, blocks, "r0", "r1", "r2", "r3")
		b.ResetTimer()
		for i := range b.N {
			c.mu.Lock()
			c.sharesLocked(func(m string) bool { return m != "r3" || i%2 == 0 })
			c.mu.Unlock()
		}
	})
	b.Run("alone", func(b *testing.B) {
		c := benchCrowd(b, blocks, "r0")
		b.ResetTimer()
		for range b.N {
			batch, _, _, _ := c.takeOwn(false, true)
			if len(batch) == 0 {
				b.StopTimer()
				c = benchCrowd(b, blocks, "r0")
				b.StartTimer()
				continue
			}
			c.landed(batch, stored(batch), "")
		}
	})
}

func stored(batch []cid.Cid) map[cid.Cid][]byte {
	got := make(map[cid.Cid][]byte, len(batch))
	for _, b := range batch {
		got[b] = nil
	}
	return got
}
