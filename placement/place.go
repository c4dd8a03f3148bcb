package placement

import (
	"bytes"
	"crypto/sha256"
	"slices"
	"strings"
)

// Member is a node as placement sees it.
type Member struct {
	ID   string // a libp2p peer ID in its raw byte form, i.e. string(peer.ID)
	Site string // failure domain
}

// candidate is a member with its distance to the key being placed.
type candidate struct {
	Member
	dist [sha256.Size]byte
}

// Place returns the placement set of the block whose key is key (the bytes
// of the block CID's multihash): up to r members, ordered by increasing
// distance to the key, on min(r, number of sites) distinct sites.
//
// The result depends only on the set of members, not on their order. A
// member ID listed twice counts once; if its copies name different sites,
// the smallest site string is used, so that the choice too is independent of
// order. Place returns nil when r <= 0 or members is empty. It does not
// modify members.
func Place(key []byte, members []Member, r int) []Member {
	if r <= 0 || len(members) == 0 {
		return nil
	}
	target := sha256.Sum256(key)
	cands := make([]candidate, len(members))
	var id []byte // reused: converting each ID to hash it would allocate
	for i, m := range members {
		id = append(id[:0], m.ID...)
		cands[i] = candidate{Member: m, dist: sha256.Sum256(id)}
		for j := range cands[i].dist {
			cands[i].dist[j] ^= target[j]
		}
	}
	// Equal IDs have equal distances, so sorting by (distance, ID, site)
	// puts duplicates next to each other with the smallest site first.
	slices.SortFunc(cands, func(a, b candidate) int {
		if c := bytes.Compare(a.dist[:], b.dist[:]); c != 0 {
			return c
		}
		if c := strings.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		return strings.Compare(a.Site, b.Site)
	})
	cands = slices.CompactFunc(cands, func(a, b candidate) bool { return a.ID == b.ID })

	taken := make([]bool, len(cands))
	n := 0
	sites := make(map[string]bool, r)
	for i, c := range cands {
		if n == r {
			break
		}
		if !sites[c.Site] {
			sites[c.Site] = true
			taken[i] = true
			n++
		}
	}
	for i := range cands {
		if n == r {
			break
		}
		if !taken[i] {
			taken[i] = true
			n++
		}
	}

	set := make([]Member, 0, n)
	for i, c := range cands {
		if taken[i] {
			set = append(set, c.Member)
		}
	}
	return set
}

// Contains reports whether the member with the given ID is in set.
func Contains(set []Member, id string) bool {
	return slices.ContainsFunc(set, func(m Member) bool { return m.ID == id })
}
