package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sampleEntries returns a catalog's worth of entries of every kind,
// tombstones and zero times included.
func sampleEntries(t testing.TB) []Entry {
	t.Helper()
	created := time.Date(2026, 3, 4, 5, 6, 7, 891011, time.UTC)
	return []Entry{
		{Key: DiskKey("web"), Root: testRoot(t, 1), Owner: peerA, Epoch: 2, Version: 10, Writer: peerA,
			Size: 10 << 30, BlockSize: 64 << 10, Replicas: 3, Sync: true, Created: created, Modified: created.Add(time.Hour),
			Allow: []string{"10.0.0.0/8", "2001:db8::/32"}, Initiators: []string{"iqn.1993-08.org.debian:01:host1"}, CHAP: true,
			Origin: "golden@nightly.1", Creator: "csi"},
		{Key: ReplicaKey("web", "nightly.1"), Root: testRoot(t, 2), Owner: peerB, Version: 3, Writer: peerB,
			Size: 10 << 30, BlockSize: 64 << 10, Created: created},
		{Key: SpacesuitKey("ubuntu-24.04", 3), Root: testRoot(t, 3), Owner: peerC, Version: 7, Writer: peerA},
		{Key: DiskKey("gone"), Owner: peerA, Epoch: 1 << 40, Version: 11, Writer: peerB, Deleted: true, Modified: time.Unix(0, 0).UTC()},
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 0))
	cases := [][]Entry{{}, sampleEntries(t)}
	for range 50 {
		var es []Entry
		for i := range rng.IntN(20) {
			e := Entry{
				Key:       DiskKey("d" + strconv.Itoa(rng.IntN(10))),
				Root:      testRoot(t, i),
				Owner:     []string{peerA, peerB, peerC}[rng.IntN(3)],
				Epoch:     rng.Uint64(),
				Version:   1 + rng.Uint64N(maxVersion),
				Writer:    []string{peerA, peerB, peerC}[rng.IntN(3)],
				Deleted:   rng.IntN(2) == 0,
				Size:      rng.Int64(),
				BlockSize: rng.Int64N(1 << 22),
				Replicas:  rng.IntN(5),
				Sync:      rng.IntN(2) == 0,
				Created:   time.Unix(0, rng.Int64()).UTC(),
				CHAP:      rng.IntN(2) == 0,
			}
			if rng.IntN(2) == 0 {
				e.Allow = []string{"192.0.2.0/24", "198.51.100.7/32"}[:1+rng.IntN(2)]
				e.Initiators = []string{"iqn.2026-01.test:" + strconv.Itoa(rng.IntN(10))}
			}
			if rng.IntN(2) == 0 {
				e.Origin = []string{"golden", "golden@r" + strconv.Itoa(rng.IntN(10)), "ubuntu-24.04@3"}[rng.IntN(3)]
				e.Creator = "csi"
			}
			es = append(es, e)
		}
		cases = append(cases, es)
	}
	for i, es := range cases {
		b, err := Encode(es)
		if err != nil {
			t.Fatalf("case %d: encode: %v", i, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("case %d: decode: %v", i, err)
		}
		if len(es) == 0 && len(got) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, es) {
			t.Fatalf("case %d: got %+v, want %+v", i, got, es)
		}
	}
}

func TestEncodeNormalizesTimes(t *testing.T) {
	local := time.FixedZone("X", 3600)
	e := sampleEntries(t)[0]
	e.Created = e.Created.In(local)
	b, err := Encode([]Entry{e})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil || !got[0].Created.Equal(e.Created) || got[0].Created.Location() != time.UTC {
		t.Fatalf("got %v, %v; want %v in UTC", got[0].Created, err, e.Created)
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	e := sampleEntries(t)[0]
	e.Key = "disk/no way"
	if _, err := Encode([]Entry{e}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v, want ErrInvalid", err)
	}
}

// encodeRaw encodes v with the catalog's encoder, bypassing validation.
func encodeRaw(t *testing.T, v any) []byte {
	t.Helper()
	b, err := encMode.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeRejects(t *testing.T) {
	good, err := Encode(sampleEntries(t))
	if err != nil {
		t.Fatal(err)
	}
	w := toWire(sampleEntries(t)[0])
	wire := func(f func(*wireEntry)) []byte {
		w := w
		f(&w)
		return encodeRaw(t, []wireEntry{w})
	}
	asMap := func(extra map[int]any) []byte {
		m := map[int]any{1: w.Key, 2: w.Root, 3: w.Owner, 5: w.Version, 6: w.Writer}
		for k, v := range extra {
			m[k] = v
		}
		return encodeRaw(t, []map[int]any{m})
	}
	zero := int64(0)
	for name, b := range map[string][]byte{
		"empty":               {},
		"null":                {0xf6},
		"not an array":        encodeRaw(t, map[string]int{"a": 1}),
		"array of ints":       encodeRaw(t, []int{1, 2}),
		"truncated":           good[:len(good)-1],
		"trailing byte":       append(bytes.Clone(good), 0x00),
		"two arrays":          append(bytes.Clone(good), good...),
		"unknown field":       asMap(map[int]any{21: 1}),
		"allow unmasked":      asMap(map[int]any{16: []string{"10.1.2.3/8"}}),
		"allow unsorted":      asMap(map[int]any{16: []string{"192.0.2.0/24", "10.0.0.0/8"}}),
		"allow repeated":      asMap(map[int]any{16: []string{"10.0.0.0/8", "10.0.0.0/8"}}),
		"allow not a cidr":    asMap(map[int]any{16: []string{"ten"}}),
		"allow empty":         asMap(map[int]any{16: []string{}}),
		"allow too long":      asMap(map[int]any{16: manyNetworks(257)}),
		"initiator upper":     asMap(map[int]any{17: []string{"iqn.2026-01.test:A"}}),
		"initiator space":     asMap(map[int]any{17: []string{"iqn.2026-01 test"}}),
		"initiator bytes":     asMap(map[int]any{17: [][]byte{[]byte("iqn.2026-01.test:a")}}),
		"chap false":          asMap(map[int]any{18: false}),
		"acl on a replica":    wire(func(w *wireEntry) { w.Key, w.Allow = "replica/d/r", []string{"10.0.0.0/8"} }),
		"chap on a policy":    wire(func(w *wireEntry) { w.Key, w.CHAP = "replicate/d/site", true }),
		"origin empty name":   asMap(map[int]any{19: "golden@"}),
		"origin two ats":      asMap(map[int]any{19: "a@b@c"}),
		"origin slash":        asMap(map[int]any{19: "a/b"}),
		"origin too long":     asMap(map[int]any{19: strings.Repeat("a", 129)}),
		"origin bytes":        asMap(map[int]any{19: []byte("golden")}),
		"origin empty":        asMap(map[int]any{19: ""}),
		"creator too long":    asMap(map[int]any{20: strings.Repeat("c", MaxCreatorLen+1)}),
		"creator space":       asMap(map[int]any{20: "c s i"}),
		"creator empty":       asMap(map[int]any{20: ""}),
		"origin on a replica": asMap(map[int]any{1: "replica/d/r", 19: "golden"}),
		"creator on a suit":   asMap(map[int]any{1: "spacesuit/s@1", 20: "csi"}),
		"policy too big":      asMap(map[int]any{14: make([]byte, MaxPolicy+1)}),
		"text field name":     encodeRaw(t, []map[string]any{{"1": w.Key}}),
		"indefinite array":    {0x9f, 0xff},
		"tagged":              append([]byte{0xc1}, good...),
		"bad key":             wire(func(w *wireEntry) { w.Key = "disk/a/b" }),
		"bad name":            wire(func(w *wireEntry) { w.Key = "disk/" + strings.Repeat("x", 129) }),
		"bad cid":             wire(func(w *wireEntry) { w.Root = []byte{0x01, 0x71, 0x12, 0x20, 0xaa} }),
		"cid trailing":        wire(func(w *wireEntry) { w.Root = append(bytes.Clone(w.Root), 0) }),
		"replica no root":     wire(func(w *wireEntry) { w.Key, w.Root = "replica/d/r", nil }),
		"bad owner":           wire(func(w *wireEntry) { w.Owner = "0OIl" }),
		"version 0":           wire(func(w *wireEntry) { w.Version = 0 }),
		"negative size":       wire(func(w *wireEntry) { w.Size = -5 }),
		"explicit zero":       asMap(map[int]any{4: 0}),
		"explicit null":       asMap(map[int]any{12: nil}),
		"explicit empty":      asMap(map[int]any{2: []byte{}, 12: &zero}),
		"negative epoch":      asMap(map[int]any{4: -1}),
		"version too big":     asMap(map[int]any{5: uint64(1 << 63)}),
		"duplicate field":     {0x81, 0xa2, 0x01, 0x60, 0x01, 0x60},
		"not utf-8":           wire(func(w *wireEntry) { w.Writer = "\xff" }),
		"too large":           make([]byte, MaxEncodedSize+1),
	} {
		if _, err := Decode(b); err == nil {
			t.Errorf("%s: decoded, want an error", name)
		}
	}
	if _, err := Decode(asMap(nil)); err != nil {
		t.Fatalf("control: the minimal entry map does not decode: %v", err)
	}
	if _, err := Decode(asMap(map[int]any{16: manyNetworks(256), 17: []string{"iqn.2026-01.test:a"}, 18: true})); err != nil {
		t.Fatalf("control: a disk with the longest allow-list does not decode: %v", err)
	}
	if _, err := Decode(asMap(map[int]any{19: strings.Repeat("a", 128) + "@" + strings.Repeat("b", 128), 20: strings.Repeat("c", MaxCreatorLen)})); err != nil {
		t.Fatalf("control: a disk with the longest origin and creator does not decode: %v", err)
	}
}

// manyNetworks returns n distinct /32 networks in canonical order.
func manyNetworks(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("10.0.%d.%d/32", i/256, i%256))
	}
	slices.Sort(out)
	return out
}

func TestDecodeBoundsEntries(t *testing.T) {
	over := []byte{0x9a, 0x00, 0x10, 0x00, 0x01} // array of 1<<20+1 items
	if _, err := Decode(append(over, bytes.Repeat([]byte{0xa0}, 16)...)); err == nil {
		t.Fatal("decoded an array of 1<<20+1 entries, want an error")
	}
	// 1<<20 empty maps in 1 MiB: refused at the first without decoding
	// the rest, so an input cannot make Decode allocate far beyond its size.
	claim := append([]byte{0x9a, 0x00, 0x10, 0x00, 0x00}, bytes.Repeat([]byte{0xa0}, 1<<20)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Decode(claim)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("decoded empty entries, want an error")
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("decode of a 1 MiB input allocated %d bytes, want under 1 MiB", n)
	}
}

// TestSeedCorpusIsCurrent checks that the fuzz corpus holds a valid encoded
// catalog, so the fuzzer starts from real input. Run with WEFT_WRITE_SEEDS=1
// to regenerate it after a format change.
func TestSeedCorpusIsCurrent(t *testing.T) {
	b, err := Encode(sampleEntries(t))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "fuzz", "FuzzDecode", "valid-catalog")
	if os.Getenv("WEFT_WRITE_SEEDS") != "" {
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stored, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("seed: %v (regenerate with WEFT_WRITE_SEEDS=1)", err)
	}
	lines := strings.Split(strings.TrimSpace(string(stored)), "\n")
	if len(lines) != 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") {
		t.Fatalf("seed %s: not in the fuzz corpus format", path)
	}
	quoted := strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")")
	data, err := strconv.Unquote(quoted)
	if err != nil {
		t.Fatalf("seed %s: %v", path, err)
	}
	if _, err := Decode([]byte(data)); err != nil {
		t.Fatalf("seed %s does not decode: %v (regenerate with WEFT_WRITE_SEEDS=1)", path, err)
	}
}

// FuzzDecode feeds arbitrary bytes to the decoder: it must never panic, and
// whatever it accepts must re-encode to the same bytes and decode again to
// the same entries.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		es, err := Decode(data)
		if err != nil {
			return
		}
		again, err := Encode(es)
		if err != nil {
			t.Fatalf("decoded entries do not re-encode: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, data)
		}
		es2, err := Decode(again)
		if err != nil || !reflect.DeepEqual(es2, es) {
			t.Fatalf("decode of re-encoding: got %+v, %v; want %+v", es2, err, es)
		}
	})
}
