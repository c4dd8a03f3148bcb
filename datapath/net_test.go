package datapath

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"golang.org/x/time/rate"

	"github.com/weft-mesh/weft/blockmap"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/exchange"
	"github.com/weft-mesh/weft/mesh/memnet"
	"github.com/weft-mesh/weft/mesh/memnet/memnettest"
)

// testNet is an in-memory mesh of nodes, each with a memory store served
// by the real block exchange over memnet and a client to reach the others.
type testNet struct {
	tb      testing.TB
	mesh    *memnettest.Mesh
	net     *memnet.Network
	stores  map[string]*blockstore.Memory // the mesh's
	clients map[string]*exchange.Client   // the mesh's
	// thresholds are the Thresholds of the swarm and crowd transfers started on
	// the net (startCleaned).
	thresholds Thresholds
	// swarmBlockSize is the Spec.BlockSize of the swarms startSwarm
	// starts (0: MinBlockSize).
	swarmBlockSize int
	// peers are the Peers a node's transfers use in place of its client
	// (startCleaned), where a test watches them.
	peers map[string]Peers
}

func newTestNet(tb testing.TB) *testNet {
	tb.Helper()
	mesh := memnettest.New(tb)
	return &testNet{tb: tb, mesh: mesh, net: mesh.Net, stores: mesh.Stores, clients: mesh.Clients}
}

// srcDst returns the test's seeded randomness and a net of two plain
// nodes, "src" and "dst", with their stores.
func srcDst(t *testing.T) (rng *rand.Rand, net *testNet, src, dst *blockstore.Memory) {
	t.Helper()
	net = newTestNet(t)
	return newRand(t), net, net.add("src", nil), net.add("dst", nil)
}

// add starts a node serving its store, or what serve wraps around it.
func (n *testNet) add(id string, serve func(*blockstore.Memory) exchange.Store) *blockstore.Memory {
	return n.mesh.Add(id, serve)
}

// disk is a random disk written to a store.
type disk struct {
	root      cid.Cid
	blocks    int   // indexes, holes included
	blockSize int   // bytes of every data block
	held      []int // indexes that are not holes
}

// writeDisk writes a disk of n blocks of size bytes to store, about one in
// holeEvery a hole (none if holeEvery is 0).
func writeDisk(tb testing.TB, rng *rand.Rand, store *blockstore.Memory, n, size, holeEvery int) disk {
	tb.Helper()
	d := disk{blocks: n, blockSize: size}
	var changes []blockmap.Change
	for i := range n {
		if holeEvery > 0 && rng.IntN(holeEvery) == 0 {
			continue
		}
		d.held = append(d.held, i)
		changes = append(changes, blockmap.Change{Index: uint64(i), CID: putRandom(tb, rng, store, size)})
	}
	d.root = updateMap(tb, store, cid.Undef, n, changes)
	return d
}

// rewrite replaces k random non-hole blocks of d with new random data and
// returns the new version.
func rewrite(tb testing.TB, rng *rand.Rand, store *blockstore.Memory, d disk, k int) disk {
	tb.Helper()
	var changes []blockmap.Change
	for _, j := range rng.Perm(len(d.held))[:k] {
		changes = append(changes, blockmap.Change{Index: uint64(d.held[j]), CID: putRandom(tb, rng, store, d.blockSize)})
	}
	d.root = updateMap(tb, store, d.root, d.blocks, changes)
	return d
}

func putRandom(tb testing.TB, rng *rand.Rand, store *blockstore.Memory, size int) cid.Cid {
	tb.Helper()
	data := make([]byte, size)
	for j := range data {
		data[j] = byte(rng.Uint32())
	}
	b := blockstore.NewBlock(blockstore.CodecRaw, data)
	if err := store.Put(context.Background(), b); err != nil {
		tb.Fatal(err)
	}
	return b.CID
}

func updateMap(tb testing.TB, store *blockstore.Memory, root cid.Cid, blocks int, changes []blockmap.Change) cid.Cid {
	tb.Helper()
	root, err := blockmap.New(store, 64).Update(context.Background(), root, blockmap.Levels(uint64(blocks)), changes)
	if err != nil {
		tb.Fatal(err)
	}
	return root
}

// checkComplete fails unless every block under root in src is in dst with
// the same bytes.
func checkComplete(tb testing.TB, src, dst *blockstore.Memory, root cid.Cid) {
	tb.Helper()
	ctx := context.Background()
	n := 0
	err := blockmap.New(src, 64).Mark(ctx, root, func(c cid.Cid) bool {
		n++
		want, err := src.Get(ctx, c)
		if err != nil {
			tb.Fatalf("source get %s: %v", c, err)
		}
		got, err := dst.Get(ctx, c)
		if err != nil {
			tb.Fatalf("block %s not pulled: %v", c, err)
		}
		if !bytes.Equal(got, want) {
			tb.Fatalf("block %s: got %d different bytes", c, len(got))
		}
		return true
	})
	if err != nil {
		tb.Fatal(err)
	}
	if n == 0 {
		tb.Fatal("empty map")
	}
}

// waitLimit bounds every wait for a transfer. It only catches a transfer
// that stalls: what a test proves (copies sent, bytes from each member) it
// asserts once the transfer ends. A CPU-starved run (-race, two packages at
// a time on two cores, other work beside) took over 20 s for 12 MiB.
const waitLimit = 45 * time.Second

const fourReceiversBlockSize = 32 << 10

// fourReceivers is the setup of the swarm and crowd tests: an origin "src"
// whose uplink (8 MiB/s) is the bottleneck, four receivers r0-r3, and a
// disk of 256 blocks of fourReceiversBlockSize at the origin, a hole every
// holeEvery blocks (0: none).
func fourReceivers(t *testing.T, holeEvery int) (*testNet, disk, []string) {
	t.Helper()
	rng := newRand(t)
	net := newTestNet(t)
	net.add("src", slowly(8<<20))
	receivers := []string{"r0", "r1", "r2", "r3"}
	for _, r := range receivers {
		net.add(r, nil)
	}
	return net, writeDisk(t, rng, net.stores["src"], 256, fourReceiversBlockSize, holeEvery), receivers
}

// wait waits for tr to end, at most waitLimit.
func wait(tb testing.TB, tr *Transfer) (Progress, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	p, err := tr.Wait(ctx)
	if ctx.Err() != nil {
		tb.Fatalf("transfer %s still %s after %v: %+v", p.ID, p.State, waitLimit, p)
	}
	return p, err
}

// waitFor waits until cond holds of tr's progress, at most waitLimit.
func waitFor(tb testing.TB, tr *Transfer, cond func(Progress) bool) {
	tb.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond(tr.Progress()) {
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met after %v: %+v", waitLimit, tr.Progress())
		}
		time.Sleep(time.Millisecond)
	}
}

// slowStore serves a store's blocks at a bounded rate: a source with a
// narrow uplink.
type slowStore struct {
	*blockstore.Memory
	limit *rate.Limiter
}

// slowly serves at bytesPerSec, up to a block of the largest size at once.
func slowly(bytesPerSec float64) func(*blockstore.Memory) exchange.Store {
	return limited(bytesPerSec, blockstore.MaxBlockSize)
}

// limited serves at bytesPerSec, up to burst bytes at once: a small burst
// keeps a slow member slow from its first block on.
func limited(bytesPerSec float64, burst int) func(*blockstore.Memory) exchange.Store {
	return func(m *blockstore.Memory) exchange.Store {
		return &slowStore{Memory: m, limit: rate.NewLimiter(rate.Limit(bytesPerSec), burst)}
	}
}

func (s *slowStore) Get(ctx context.Context, c cid.Cid) ([]byte, error) {
	data, err := s.Memory.Get(ctx, c)
	if err != nil {
		return nil, err
	}
	for left := len(data); left > 0; left -= s.limit.Burst() {
		if err := s.limit.WaitN(ctx, min(left, s.limit.Burst())); err != nil {
			return nil, err
		}
	}
	return data, nil
}

// lyingStore serves altered bytes for the data blocks bad picks.
type lyingStore struct {
	*blockstore.Memory
	bad func(cid.Cid) bool
}

func (s *lyingStore) Get(ctx context.Context, c cid.Cid) ([]byte, error) {
	data, err := s.Memory.Get(ctx, c)
	if err == nil && c.Type() == blockstore.CodecRaw && s.bad(c) {
		data[0] ^= 0xff
	}
	return data, err
}

// copyBlocks copies the blocks under root that keep takes from src to
// dst (anyBlock: all of them, isMapNode: the map alone).
func copyBlocks(tb testing.TB, src, dst *blockstore.Memory, root cid.Cid, keep func(cid.Cid) bool) {
	tb.Helper()
	ctx := context.Background()
	err := blockmap.New(src, 64).Mark(ctx, root, func(c cid.Cid) bool {
		if !keep(c) {
			return true
		}
		data, err := src.Get(ctx, c)
		if err == nil {
			err = dst.Put(ctx, blockstore.NewBlock(c.Type(), data))
		}
		if err != nil {
			tb.Fatal(err)
		}
		return true
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// isMapNode reports whether c is a block-map node, not disk data.
func isMapNode(c cid.Cid) bool { return c.Type() == blockstore.CodecDagCBOR }
