package catalog

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// sim is a few nodes writing, deleting and gossiping one catalog.
type sim struct {
	t       *testing.T
	rng     *rand.Rand
	nodes   []*Catalog
	keys    []string
	written []Entry // every version any node wrote
	fenced  int     // writes refused for a stale epoch
}

func newSim(t *testing.T, seed uint64) *sim {
	s := &sim{t: t, rng: rand.New(rand.NewPCG(seed, 0))}
	for _, p := range []string{peerA, peerB, peerC, "12D3KooWDDDD", "12D3KooWEEEE"} {
		s.nodes = append(s.nodes, newTestCatalog(p))
	}
	s.keys = []string{DiskKey("a"), DiskKey("b"), ReplicaKey("a", "r1"), SpacesuitKey("u", 1), DiskKey("c"), DiskKey("d")}
	return s
}

// write makes node n put or delete a random key, at the epoch it knows of,
// sometimes a higher one (a takeover) or a lower one (a fenced old owner).
func (s *sim) write(n int) {
	c := s.nodes[n]
	key := s.keys[s.rng.IntN(len(s.keys))]
	var known uint64
	if cur, ok := c.Lookup(key); ok {
		known = cur.Epoch
	}
	epoch := known
	switch p := s.rng.Float64(); {
	case p < 0.2:
		epoch++
	case p < 0.3 && known > 0:
		epoch--
	}
	var e Entry
	var err error
	if s.rng.IntN(4) == 0 {
		e, err = c.Delete(key, epoch)
	} else {
		e, err = c.Put(Entry{Key: key, Root: testRoot(s.t, s.rng.IntN(1000)), Owner: c.self, Epoch: epoch, Size: s.rng.Int64N(1 << 40)})
	}
	switch {
	case epoch < known:
		if !errors.Is(err, ErrFenced) {
			s.t.Fatalf("write at epoch %d below %d: got %v, want ErrFenced", epoch, known, err)
		}
		s.fenced++
	case err != nil:
		s.t.Fatalf("write: %v", err)
	default:
		s.written = append(s.written, e)
		// A small broadcast reaches some of the other nodes.
		for _, other := range s.nodes {
			if s.rng.IntN(3) == 0 {
				other.Merge([]Entry{e})
			}
		}
	}
}

// pushPull merges a random part of node from's snapshot into node to, in
// random order and random batches.
func (s *sim) pushPull(from, to int) {
	es := s.nodes[from].Snapshot()
	s.rng.Shuffle(len(es), func(i, j int) { es[i], es[j] = es[j], es[i] })
	es = es[:s.rng.IntN(len(es)+1)]
	mergeInBatches(s.rng, s.nodes[to], es)
}

func mergeInBatches(rng *rand.Rand, c *Catalog, es []Entry) {
	for len(es) > 0 {
		n := 1 + rng.IntN(len(es))
		c.Merge(es[:n])
		es = es[n:]
	}
}

// newest returns, for each key, the newest of the versions es, sorted by key.
func newest(es []Entry) []Entry {
	best := map[string]Entry{}
	for _, e := range es {
		if cur, ok := best[e.Key]; !ok || compare(e, cur) > 0 {
			best[e.Key] = e
		}
	}
	out := make([]Entry, 0, len(best))
	for _, e := range best {
		out = append(out, e)
	}
	sortByKey(out)
	return out
}

func TestReplicasConverge(t *testing.T) {
	for seed := range uint64(30) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			s := newSim(t, seed)
			for range 300 {
				if s.rng.IntN(2) == 0 {
					s.write(s.rng.IntN(len(s.nodes)))
				} else {
					s.pushPull(s.rng.IntN(len(s.nodes)), s.rng.IntN(len(s.nodes)))
				}
			}
			// Anti-entropy: every node pulls every other's full state.
			for _, to := range s.rng.Perm(len(s.nodes)) {
				for _, from := range s.rng.Perm(len(s.nodes)) {
					s.nodes[to].Merge(s.nodes[from].Snapshot())
				}
			}
			want := newest(s.written)
			deleted := 0
			for _, e := range want {
				if e.Deleted {
					deleted++
				}
			}
			t.Logf("%d versions written, %d writes fenced; %d keys converged, %d deleted", len(s.written), s.fenced, len(want), deleted)
			for i, c := range s.nodes {
				if got := c.Snapshot(); !reflect.DeepEqual(got, want) {
					t.Fatalf("node %d: snapshot\n%+v\nwant\n%+v", i, got, want)
				}
				if changed := c.Merge(want); len(changed) != 0 {
					t.Fatalf("node %d: merging the converged state again changed %v", i, changed)
				}
			}

			// Any order, grouping and repetition of all the versions gives
			// the same state.
			for range 5 {
				es := slices.Concat(s.written, s.written[:s.rng.IntN(len(s.written)+1)])
				s.rng.Shuffle(len(es), func(i, j int) { es[i], es[j] = es[j], es[i] })
				c := newTestCatalog(peerC)
				mergeInBatches(s.rng, c, es)
				if got := c.Snapshot(); !reflect.DeepEqual(got, want) {
					t.Fatalf("shuffled merge: snapshot\n%+v\nwant\n%+v", got, want)
				}
			}
		})
	}
}
