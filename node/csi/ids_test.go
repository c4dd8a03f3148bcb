package csi

import (
	"slices"
	"strings"
	"testing"

	"github.com/weft-mesh/weft/volume"
)

func TestWeftName(t *testing.T) {
	long := strings.Repeat("a", 129)
	for _, tc := range []struct {
		in     string
		hashed bool
	}{
		{"pvc-0b7c9e5e-2a43-4a63-9b1e-4f3c2d1a0e9f", false},
		{"web.data_1", false},
		{strings.Repeat("x", 128), false},
		{long, true},
		{"has space", true},
		{"-dash-first", true},
		{"ünïcode", true},
		{"a/b", true},
	} {
		got := weftName(tc.in)
		if err := volume.ValidateName(got); err != nil {
			t.Errorf("weftName(%q) = %q: not a valid weft name: %v", tc.in, got, err)
		}
		if hashed := got != tc.in; hashed != tc.hashed {
			t.Errorf("weftName(%q) = %q: hashed %v, want %v", tc.in, got, hashed, tc.hashed)
		}
		if again := weftName(tc.in); again != got {
			t.Errorf("weftName(%q) = %q then %q, want the same", tc.in, got, again)
		}
	}
	if weftName(long) == weftName(long+"b") {
		t.Errorf("two long names map to the same disk %q", weftName(long))
	}
}

func TestSnapshotIDRoundTrip(t *testing.T) {
	id := snapshotID("vol-1", "snap.2")
	disk, rep, err := parseSnapshotID(id)
	if err != nil || disk != "vol-1" || rep != "snap.2" {
		t.Fatalf("parseSnapshotID(%q) = %q, %q, %v; want vol-1, snap.2, nil", id, disk, rep, err)
	}
	for _, bad := range []string{"", "vol", "@snap", "vol@", "vol@a@b", "v ol@s", "vol@-s", "reallyfakesnapshotid"} {
		if _, _, err := parseSnapshotID(bad); err == nil {
			t.Errorf("parseSnapshotID(%q): nil error, want errBadID", bad)
		}
	}
}

func TestPage(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e"}
	var got []string
	token := ""
	for range len(ids) + 1 {
		out, next, err := page(ids, token, 2)
		if err != nil {
			t.Fatalf("page(token %q): %v", token, err)
		}
		got = append(got, out...)
		if next == "" {
			break
		}
		token = next
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("pages of 2 gave %q, want %q", got, ids)
	}

	// The last entry of a page is removed, and entries are added, before
	// the next page: it starts after the token's entry all the same.
	out, next, _ := page(ids, "", 2)
	if !slices.Equal(out, []string{"a", "b"}) || next != tokenPrefix+"b" {
		t.Fatalf("first page %q, %q; want [a b], %q", out, next, tokenPrefix+"b")
	}
	changed := []string{"a", "a2", "c", "c2", "d", "e"}
	out, next, _ = page(changed, next, 2)
	if !slices.Equal(out, []string{"c", "c2"}) || next != tokenPrefix+"c2" {
		t.Fatalf("page after b was removed: %q, %q; want [c c2], %q", out, next, tokenPrefix+"c2")
	}

	if out, next, _ := page(ids, "", 0); len(out) != len(ids) || next != "" {
		t.Fatalf("max_entries 0: %q, %q; want every entry and no token", out, next)
	}
	if out, next, _ := page(ids, tokenPrefix+"e", 2); len(out) != 0 || next != "" {
		t.Fatalf("after the last: %q, %q; want nothing", out, next)
	}
	for _, bad := range []string{"invalid-token", tokenPrefix, "3"} {
		if _, _, err := page(ids, bad, 2); err == nil {
			t.Errorf("page(token %q): nil error, want errBadID", bad)
		}
	}
}

func TestVolumeSize(t *testing.T) {
	const bs = 64 << 10
	for _, tc := range []struct {
		req, lim, want int64
		ok             bool
	}{
		{0, 0, defaultVolumeSize, true},
		{1, 0, bs, true},
		{bs, 0, bs, true},
		{bs + 1, 0, 2 * bs, true},
		{0, 3*bs + 5, 3 * bs, true},
		{bs + 1, bs + 100, 0, false}, // no whole block fits
		{0, bs - 1, 0, false},
		{10 << 30, 10 << 30, 10 << 30, true},
	} {
		got, ok := volumeSize(&capacityRange{tc.req, tc.lim}, bs)
		if ok != tc.ok || ok && got != tc.want {
			t.Errorf("volumeSize(%d..%d) = %d, %v; want %d, %v", tc.req, tc.lim, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseParams(t *testing.T) {
	p, err := parseParams(map[string]string{"replicas": "3", "sync": "true", "block_size": "4096", "csi.storage.k8s.io/pvc/name": "x"})
	if err != nil || p.replicas != 3 || p.sync == nil || !*p.sync || p.blockSize != 4096 {
		t.Fatalf("parseParams: %+v, %v; want replicas 3, sync true, block size 4096", p, err)
	}
	for _, bad := range []map[string]string{
		{"replicas": "0"}, {"replicas": "17"}, {"sync": "maybe"}, {"block_size": "5000"}, {"block_size": "1024"}, {"size": "1G"},
	} {
		if _, err := parseParams(bad); err == nil {
			t.Errorf("parseParams(%v): nil error, want one", bad)
		}
	}
}

// FuzzIDs feeds outside input (IDs and tokens a CO sends) to the parsers:
// they never panic, and what they accept round-trips.
func FuzzIDs(f *testing.F) {
	for _, s := range []string{"vol@snap", "after:vol", "invalid-token", "@", "a@b@c", "after:", "csi-00@x"} {
		f.Add(s)
	}
	ids := []string{"a", "m", "z"}
	f.Fuzz(func(t *testing.T, s string) {
		if disk, rep, err := parseSnapshotID(s); err == nil && snapshotID(disk, rep) != s {
			t.Fatalf("parseSnapshotID(%q) = %q, %q: does not round-trip", s, disk, rep)
		}
		out, next, err := page(ids, s, 1)
		if err == nil && len(out) > 1 {
			t.Fatalf("page(token %q, 1) = %q, %q: more than one entry", s, out, next)
		}
		if n := weftName(s); volume.ValidateName(n) != nil {
			t.Fatalf("weftName(%q) = %q: not a valid name", s, n)
		}
	})
}
