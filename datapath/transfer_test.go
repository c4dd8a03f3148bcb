package datapath

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockmap"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/exchange"
)

const seed = 1

func newRand(t testing.TB) *rand.Rand {
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, 11))
}

// TestPullAndUpdate pulls a disk whole, then a new version of it: the
// second pull moves only the changed blocks.
func TestPullAndUpdate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rng, net, src, dst := srcDst(t)
		const size = 64 << 10
		v1 := writeDisk(t, rng, src, 300, size, 10)

		spec := Spec{ID: "pull-v1", Root: v1.root, Sources: []string{"src"}, BlockSize: 1 << 20, DiskBlockSize: size}
		p, err := wait(t, Start(context.Background(), spec, net.clients["dst"], dst, nil))
		if err != nil {
			t.Fatalf("pull v1: %v", err)
		}
		checkComplete(t, src, dst, v1.root)
		if p.State != StateDone || p.DoneBlocks != int64(len(v1.held)) || p.SkippedBlocks != 0 {
			t.Fatalf("got %s with %d done, %d skipped; want done with %d done, 0 skipped", p.State, p.DoneBlocks, p.SkippedBlocks, len(v1.held))
		}
		if want := int64(len(v1.held) * size); p.DoneBytes != want || p.TotalBytes != want || p.BytesFrom["src"] != want {
			t.Fatalf("got %d done bytes of %d, %d from src; want %d", p.DoneBytes, p.TotalBytes, p.BytesFrom["src"], want)
		}

		changed := len(v1.held) / 20
		v2 := rewrite(t, rng, src, v1, changed)
		spec.ID, spec.Root = "pull-v2", v2.root
		p, err = wait(t, Start(context.Background(), spec, net.clients["dst"], dst, nil))
		if err != nil {
			t.Fatalf("pull v2: %v", err)
		}
		checkComplete(t, src, dst, v2.root)
		changedBytes := int64(changed * size)
		if p.DoneBytes < changedBytes*9/10 || p.DoneBytes > changedBytes*3/2 {
			t.Fatalf("got %d bytes moved, want about the %d changed", p.DoneBytes, changedBytes)
		}
		if want := int64(len(v1.held) - changed); p.SkippedBlocks != want {
			t.Fatalf("got %d skipped blocks, want %d", p.SkippedBlocks, want)
		}
	})
}

// TestSwarm has two receivers pull from a slow source and from each other:
// together they take well under two copies from the source.
func TestSwarm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rng := newRand(t)
		net := newTestNet(t)
		const size = 32 << 10
		src := net.add("src", slowly(8<<20))
		a := net.add("a", nil)
		b := net.add("b", nil)
		d := writeDisk(t, rng, src, 200, size, 10)
		spec := func(id string, other string) Spec {
			return Spec{ID: id, Root: d.root, Sources: []string{"src", other}, BlockSize: MinBlockSize, DiskBlockSize: size}
		}
		ctx := context.Background()
		ta := Start(ctx, spec("swarm-a", "b"), net.clients["a"], a, nil)
		// A head start: a third of the disk is on a before b starts, so b
		// finds it there whatever the timing after.
		waitFor(t, ta, func(p Progress) bool { return p.DoneBlocks >= int64(len(d.held)/3) })
		tb := Start(ctx, spec("swarm-b", "a"), net.clients["b"], b, nil)
		pa, err := wait(t, ta)
		if err != nil {
			t.Fatalf("a: %v", err)
		}
		pb, err := wait(t, tb)
		if err != nil {
			t.Fatalf("b: %v", err)
		}
		checkComplete(t, src, a, d.root)
		checkComplete(t, src, b, d.root)
		copyBytes := int64(len(d.held) * size)
		fromSrc := pa.BytesFrom["src"] + pb.BytesFrom["src"]
		t.Logf("from src %d (%.2f copies); a got %d from b, b got %d from a", fromSrc, float64(fromSrc)/float64(copyBytes), pa.BytesFrom["b"], pb.BytesFrom["a"])
		if fromSrc > copyBytes*7/4 {
			t.Fatalf("got %d bytes from the source, want well under two copies (%d)", fromSrc, 2*copyBytes)
		}
		if pb.BytesFrom["a"] < copyBytes/3 {
			t.Fatalf("b got %d bytes from a, want at least a's head start %d", pb.BytesFrom["a"], copyBytes/3)
		}
	})
}

// TestBadSource drops a source that serves wrong bytes and completes from
// the other.
func TestBadSource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rng := newRand(t)
		net := newTestNet(t)
		const size = 16 << 10
		good := net.add("good", nil)
		liar := net.add("liar", func(m *blockstore.Memory) exchange.Store {
			return &lyingStore{Memory: m, bad: func(c cid.Cid) bool { return c.Hash()[5]%4 == 0 }}
		})
		dst := net.add("dst", nil)
		d := writeDisk(t, rng, good, 200, size, 10)
		copyBlocks(t, good, liar, d.root, anyBlock)
		// The liar is preferred, being a swarm source.
		spec := Spec{ID: "bad", Root: d.root, Sources: []string{"good", "liar"}, BlockSize: MinBlockSize, DiskBlockSize: size}
		p, err := wait(t, Start(context.Background(), spec, net.clients["dst"], dst, nil))
		if err != nil {
			t.Fatalf("pull: %v", err)
		}
		checkComplete(t, good, dst, d.root)
		if len(p.DroppedPeers) != 1 || p.DroppedPeers[0] != "liar" {
			t.Fatalf("got dropped peers %v, want [liar]", p.DroppedPeers)
		}
		if p.BytesFrom["good"] == 0 {
			t.Fatalf("got nothing from the good source: %v", p.BytesFrom)
		}
	})
}

// TestRottedBlockCostsOnlyThatBlock: a source whose copy of one block went
// bad (rot on its disk) is not asked for that block again, and keeps
// serving the others; only a peer with many bad blocks is dropped.
func TestRottedBlockCostsOnlyThatBlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rng := newRand(t)
		net := newTestNet(t)
		const size = 16 << 10
		good := net.add("good", nil)
		var victim cid.Cid
		rotted := net.add("rotted", func(m *blockstore.Memory) exchange.Store {
			return &lyingStore{Memory: m, bad: func(c cid.Cid) bool { return c == victim }}
		})
		dst := net.add("dst", nil)
		d := writeDisk(t, rng, good, 200, size, 10)
		copyBlocks(t, good, rotted, d.root, anyBlock)
		if err := blockmap.New(good, 64).Mark(context.Background(), d.root, func(c cid.Cid) bool {
			if !victim.Defined() && c.Type() == blockstore.CodecRaw {
				victim = c
			}
			return true
		}); err != nil {
			t.Fatal(err)
		}
		spec := Spec{ID: "rot", Root: d.root, Sources: []string{"good", "rotted"}, BlockSize: MinBlockSize, DiskBlockSize: size}
		p, err := wait(t, Start(context.Background(), spec, net.clients["dst"], dst, nil))
		if err != nil {
			t.Fatalf("pull: %v", err)
		}
		checkComplete(t, good, dst, d.root)
		if len(p.DroppedPeers) != 0 {
			t.Fatalf("dropped %v for one rotted block", p.DroppedPeers)
		}
		// The rotted source is preferred, being a swarm source: it still sends
		// most of the disk.
		if p.BytesFrom["rotted"] <= p.BytesFrom["good"] {
			t.Fatalf("bytes from: %v, want most from the source with one rotted block", p.BytesFrom)
		}
	})
}

// TestBWLimit holds a transfer of 2 MiB at 1 MiB/s for most of 2 s.
func TestBWLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rng, net, src, dst := srcDst(t)
		const size = 64 << 10
		d := writeDisk(t, rng, src, 32, size, 0)
		bytes := len(d.held) * size
		spec := Spec{ID: "limited", Root: d.root, Sources: []string{"src"}, BWLimit: 1 << 20, DiskBlockSize: size}
		start := time.Now()
		p, err := wait(t, Start(context.Background(), spec, net.clients["dst"], dst, nil))
		if err != nil {
			t.Fatalf("pull: %v", err)
		}
		took := time.Since(start)
		t.Logf("%d bytes in %v", p.DoneBytes, took)
		if floor := time.Duration(float64(bytes-(1<<20)/4) / (1 << 20) * 0.9 * float64(time.Second)); took < floor {
			t.Fatalf("moved %d bytes at 1 MiB/s in %v, want at least %v", bytes, took, floor)
		}
	})
}

// TestPriority runs a very-high and a very-low transfer of equal size
// through one scheduler with a link budget: the high one ends first.
func TestPriority(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rng, net, src, dst := srcDst(t)
		const size = 64 << 10
		hi := writeDisk(t, rng, src, 64, size, 0)
		lo := writeDisk(t, rng, src, 64, size, 0)
		sched := NewScheduler(8 << 20)
		spec := func(id string, d disk, p Priority) Spec {
			return Spec{ID: id, Root: d.root, Sources: []string{"src"}, Priority: p, BlockSize: 256 << 10, DiskBlockSize: size}
		}
		ctx := context.Background()
		tlo := Start(ctx, spec("low", lo, VeryLow), net.clients["dst"], dst, sched)
		thi := Start(ctx, spec("high", hi, VeryHigh), net.clients["dst"], dst, sched)
		phi, err := wait(t, thi)
		if err != nil {
			t.Fatalf("high: %v", err)
		}
		plo, err := wait(t, tlo)
		if err != nil {
			t.Fatalf("low: %v", err)
		}
		t.Logf("high took %v, low %v", phi.Ended.Sub(phi.Started), plo.Ended.Sub(plo.Started))
		if !phi.Ended.Before(plo.Ended) {
			t.Fatalf("high ended at %v, low at %v: want high first", phi.Ended, plo.Ended)
		}
	})
}

// TestCancelResume cancels a pull halfway and starts it again: the second
// run skips what the first moved.
func TestCancelResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rng := newRand(t)
		net := newTestNet(t)
		const size = 32 << 10
		// A burst of one block keeps the source slow from its first block
		// on: the pull (about 4.8 MB at 2 MB/s) is still running when the
		// test cancels it a third of the way in, whatever the scheduling.
		src := net.add("src", limited(2<<20, size))
		dst := net.add("dst", nil)
		d := writeDisk(t, rng, src, 150, size, 10)
		spec := Spec{ID: "resume", Root: d.root, Sources: []string{"src"}, BlockSize: 128 << 10, DiskBlockSize: size}
		first := Start(context.Background(), spec, net.clients["dst"], dst, nil)
		waitFor(t, first, func(p Progress) bool { return p.DoneBlocks >= int64(len(d.held)/3) })
		first.Cancel()
		p1, err := wait(t, first)
		if !errors.Is(err, context.Canceled) || p1.State != StateCancelled {
			t.Fatalf("got %s, %v; want cancelled, context.Canceled", p1.State, err)
		}
		p2, err := wait(t, Start(context.Background(), spec, net.clients["dst"], dst, nil))
		if err != nil {
			t.Fatalf("resume: %v", err)
		}
		checkComplete(t, src, dst, d.root)
		copyBytes := int64(len(d.held) * size)
		moved := p1.DoneBytes + p2.DoneBytes
		t.Logf("first run %d bytes, second %d, one copy %d", p1.DoneBytes, p2.DoneBytes, copyBytes)
		if moved < copyBytes*9/10 || moved > copyBytes*11/10 {
			t.Fatalf("got %d bytes over both runs, want one copy (%d) within 10%%", moved, copyBytes)
		}
		if p2.SkippedBlocks == 0 {
			t.Fatalf("got no skipped blocks on resume")
		}
	})
}

// TestContextEnds cancels a pull through its context.
func TestContextEnds(t *testing.T) {
	rng := newRand(t)
	net := newTestNet(t)
	src := net.add("src", slowly(1<<20))
	dst := net.add("dst", nil)
	d := writeDisk(t, rng, src, 100, 32<<10, 10)
	ctx, cancel := context.WithCancel(context.Background())
	tr := Start(ctx, Spec{ID: "ctx", Root: d.root, Sources: []string{"src"}, DiskBlockSize: 32 << 10, BlockSize: MinBlockSize}, net.clients["dst"], dst, nil)
	waitFor(t, tr, func(p Progress) bool { return p.DoneBlocks > 0 })
	cancel()
	p, err := wait(t, tr)
	if !errors.Is(err, context.Canceled) || p.State != StateCancelled {
		t.Fatalf("got %s, %v; want cancelled, context.Canceled", p.State, err)
	}
}

// TestUnreachableSources fails a pull whose sources are all unreachable.
func TestUnreachableSources(t *testing.T) {
	net := newTestNet(t)
	dst := net.add("dst", nil)
	root := blockstore.NewBlock(blockstore.CodecDagCBOR, []byte{0x82, 0x00, 0x80}).CID
	spec := Spec{ID: "nowhere", Root: root, Sources: []string{"gone-1", "gone-2"}}
	p, err := wait(t, Start(context.Background(), spec, net.clients["dst"], dst, nil))
	if err == nil || p.State != StateFailed || p.Error == "" {
		t.Fatalf("got %s, %v; want failed with an error", p.State, err)
	}
	t.Log(err)
}

// TestBadSpec fails at once rather than panicking.
func TestBadSpec(t *testing.T) {
	for _, spec := range []Spec{
		{},
		{ID: "x", Sources: []string{"a"}},
		{ID: "x", Root: blockstore.NewBlock(blockstore.CodecRaw, nil).CID, Sources: []string{"a"}},
		{ID: "x", Root: blockstore.NewBlock(blockstore.CodecDagCBOR, nil).CID, Sources: []string{"a", "a"}},
		{ID: "x", Root: blockstore.NewBlock(blockstore.CodecDagCBOR, nil).CID, Sources: []string{"a"}, Priority: 3},
		{ID: "x", Root: blockstore.NewBlock(blockstore.CodecDagCBOR, nil).CID, Sources: []string{"a"}, BlockSize: 1},
	} {
		p, err := wait(t, Start(context.Background(), spec, nil, nil, nil))
		if err == nil || p.State != StateFailed {
			t.Fatalf("spec %+v: got %s, %v; want failed", spec, p.State, err)
		}
	}
}

func TestParsePriority(t *testing.T) {
	for _, p := range []Priority{VeryLow, Low, Normal, High, VeryHigh} {
		got, err := ParsePriority(p.String())
		if err != nil || got != p {
			t.Fatalf("ParsePriority(%q) = %v, %v; want %v", p.String(), got, err, p)
		}
	}
	if _, err := ParsePriority("urgent"); err == nil {
		t.Fatal("got no error for an unknown priority")
	}
}
