package heal

import (
	"fmt"
	"slices"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/placement"
)

// TestDecide checks each rule of decide on one block as gather would see
// it from node "self", with the other members "a", "b", "c".
func TestDecide(t *testing.T) {
	members := func(ids ...string) []placement.Member {
		var out []placement.Member
		for _, id := range ids {
			out = append(out, placement.Member{ID: id, Site: "site-" + id})
		}
		return out
	}
	data := blockstore.Sum(blockstore.CodecRaw, []byte("data"))
	mapNode := blockstore.Sum(blockstore.CodecDagCBOR, []byte("map node"))
	type want struct {
		fetch   bool
		sources []string // when fetch
		drop    bool
		counted []string
		short   int
	}
	cases := []struct {
		name string
		b    blockSeen
		want want
	}{
		{
			name: "placed here and missing: fetch from the members that confirmed it",
			b:    blockSeen{c: data, replicas: 3, set: members("self", "a", "b"), holders: []string{"a", "b"}},
			want: want{fetch: true, sources: []string{"a", "b"}, counted: []string{"a", "b"}, short: 1},
		},
		{
			name: "placed here and missing, no member confirmed it: fetch, sources found later",
			b:    blockSeen{c: data, replicas: 3, set: members("self", "a", "b")},
			want: want{fetch: true, short: 1},
		},
		{
			name: "placed here and held: nothing to do, this copy counts",
			b:    blockSeen{c: data, replicas: 3, set: members("self", "a", "b"), here: true, holders: []string{"a", "b"}},
			want: want{counted: []string{"a", "b", "self"}},
		},
		{
			name: "placed here and held, one member unconfirmed: short",
			b:    blockSeen{c: data, replicas: 3, set: members("self", "a", "b"), here: true, holders: []string{"b"}},
			want: want{counted: []string{"b", "self"}, short: 1},
		},
		{
			name: "held outside the set, all R members confirmed: surplus, dropped",
			b:    blockSeen{c: data, replicas: 3, set: members("a", "b", "c"), here: true, holders: []string{"a", "b", "c"}},
			want: want{drop: true, counted: []string{"a", "b", "c"}},
		},
		{
			name: "held outside the set, R-1 members confirmed: kept, short",
			b:    blockSeen{c: data, replicas: 3, set: members("a", "b", "c"), here: true, holders: []string{"a", "c"}},
			want: want{counted: []string{"a", "c"}, short: 1},
		},
		{
			name: "held outside the set, no member answered (unreachable): kept",
			b:    blockSeen{c: data, replicas: 3, set: members("a", "b", "c"), here: true},
			want: want{short: 1},
		},
		{
			name: "members gone: fewer live members than replicas, all confirmed: kept, not short",
			b:    blockSeen{c: data, replicas: 3, set: members("a", "b"), here: true, holders: []string{"a", "b"}},
			want: want{counted: []string{"a", "b"}},
		},
		{
			name: "members gone: placed here with fewer members than replicas, missing: fetch",
			b:    blockSeen{c: data, replicas: 3, set: members("self", "a"), holders: []string{"a"}},
			want: want{fetch: true, sources: []string{"a"}, counted: []string{"a"}, short: 1},
		},
		{
			name: "held outside the set by a root this node uses: kept as a cache",
			b:    blockSeen{c: data, replicas: 3, set: members("a", "b", "c"), here: true, local: true, holders: []string{"a", "b", "c"}},
			want: want{counted: []string{"a", "b", "c"}},
		},
		{
			name: "a map node held outside the set: kept, every node walks it",
			b:    blockSeen{c: mapNode, replicas: 3, set: members("a", "b", "c"), here: true, holders: []string{"a", "b", "c"}},
			want: want{counted: []string{"a", "b", "c"}},
		},
		{
			name: "another node's share, not held: only counted",
			b:    blockSeen{c: data, replicas: 2, set: members("a", "b"), holders: []string{"b"}},
			want: want{counted: []string{"b"}, short: 1},
		},
		{
			name: "one replica, placed here and held: not short",
			b:    blockSeen{c: data, replicas: 1, set: members("self"), here: true},
			want: want{counted: []string{"self"}},
		},
		{
			name: "one replica, held outside the set, its one member confirmed: dropped",
			b:    blockSeen{c: data, replicas: 1, set: members("a"), here: true, holders: []string{"a"}},
			want: want{drop: true, counted: []string{"a"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := fmt.Sprint(tc.b)
			p := decide(&observation{blocks: []blockSeen{tc.b}}, "self")
			if got := fmt.Sprint(tc.b); got != before {
				t.Fatalf("decide changed the observation: got %s, want %s", got, before)
			}
			if got := len(p.fetch) == 1; got != tc.want.fetch {
				t.Errorf("fetch: got %v, want %v", p.fetch, tc.want.fetch)
			}
			if got := p.sources[tc.b.c]; tc.want.fetch && !slices.Equal(got, tc.want.sources) {
				t.Errorf("sources: got %v, want %v", got, tc.want.sources)
			}
			if got := len(p.drop) == 1; got != tc.want.drop {
				t.Errorf("drop: got %v, want %v", p.drop, tc.want.drop)
			}
			if len(p.counted) != 1 || p.counted[0].c != tc.b.c || !slices.Equal(p.counted[0].holders, tc.want.counted) {
				t.Errorf("counted: got %v, want %v", p.counted, tc.want.counted)
			}
			if p.short != tc.want.short {
				t.Errorf("short: got %d, want %d", p.short, tc.want.short)
			}
		})
	}
}

// TestDecideManyBlocks checks that decide keeps the observation's order
// and sums the short blocks over all of them.
func TestDecideManyBlocks(t *testing.T) {
	set := []placement.Member{{ID: "self"}, {ID: "a"}}
	other := []placement.Member{{ID: "a"}, {ID: "b"}}
	var blocks []blockSeen
	var fetch, drop []cid.Cid
	for i := range 6 {
		c := blockstore.Sum(blockstore.CodecRaw, fmt.Appendf(nil, "block %d", i))
		switch i % 3 {
		case 0: // placed here, missing, a holds it
			blocks = append(blocks, blockSeen{c: c, replicas: 2, set: set, holders: []string{"a"}})
			fetch = append(fetch, c)
		case 1: // surplus
			blocks = append(blocks, blockSeen{c: c, replicas: 2, set: other, here: true, holders: []string{"a", "b"}})
			drop = append(drop, c)
		case 2: // placed here, held, a lacks it
			blocks = append(blocks, blockSeen{c: c, replicas: 2, set: set, here: true})
		}
	}
	p := decide(&observation{blocks: blocks}, "self")
	if !slices.Equal(p.fetch, fetch) {
		t.Errorf("fetch: got %v, want %v", p.fetch, fetch)
	}
	if !slices.Equal(p.drop, drop) {
		t.Errorf("drop: got %v, want %v", p.drop, drop)
	}
	if want := 4; p.short != want { // every fetched block, and every held one a lacks
		t.Errorf("short: got %d, want %d", p.short, want)
	}
	if len(p.counted) != len(blocks) {
		t.Fatalf("counted: got %d blocks, want %d", len(p.counted), len(blocks))
	}
	for i, h := range p.counted {
		if h.c != blocks[i].c {
			t.Errorf("counted[%d]: got %s, want %s", i, h.c, blocks[i].c)
		}
	}
}
