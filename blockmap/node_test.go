package blockmap

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/weft-mesh/weft/blockstore"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	n := &Node{Level: 0, Entries: []Entry{{Slot: 0, CID: dataCID(1)}, {Slot: 255, CID: dataCID(2)}}}
	data, err := Encode(n)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Level != 0 || len(got.Entries) != 2 || !got.Entries[1].CID.Equals(dataCID(2)) || got.Entries[1].Slot != 255 {
		t.Fatalf("decoded %+v, want %+v", got, n)
	}
}

func TestEncodeRefusesInvalidNodes(t *testing.T) {
	leaf := blockstore.Sum(blockstore.CodecDagCBOR, []byte("x"))
	for name, n := range map[string]*Node{
		"empty":          {Level: 0},
		"unsorted":       {Level: 0, Entries: []Entry{{Slot: 2, CID: dataCID(1)}, {Slot: 1, CID: dataCID(2)}}},
		"duplicate slot": {Level: 0, Entries: []Entry{{Slot: 1, CID: dataCID(1)}, {Slot: 1, CID: dataCID(2)}}},
		"node in leaf":   {Level: 0, Entries: []Entry{{Slot: 1, CID: leaf}}},
		"data in inner":  {Level: 1, Entries: []Entry{{Slot: 1, CID: dataCID(1)}}},
		"too high":       {Level: MaxLevels, Entries: []Entry{{Slot: 1, CID: leaf}}},
	} {
		if _, err := Encode(n); err == nil {
			t.Errorf("%s: Encode accepted %+v", name, n)
		}
	}
}

// FuzzDecode feeds arbitrary bytes to the node decoder: it must never panic,
// and whatever it accepts must re-encode to exactly the same bytes.
func FuzzDecode(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/seed/*")
	for _, p := range seeds {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte{})
	f.Add([]byte{0x82, 0x00, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Decode(data)
		if err != nil {
			return
		}
		again, err := Encode(n)
		if err != nil {
			t.Fatalf("decoded node does not re-encode: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, data)
		}
	})
}
