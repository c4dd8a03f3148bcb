package blockmap

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/weft-mesh/weft/blockstore"
)

// TestSeedCorpusIsCurrent checks that testdata/seed holds valid encodings of
// a leaf and an inner node, so the fuzzer starts from real nodes. Run with
// WEFT_WRITE_SEEDS=1 to regenerate them after a format change.
func TestSeedCorpusIsCurrent(t *testing.T) {
	inner := blockstore.Sum(blockstore.CodecDagCBOR, []byte("child"))
	nodes := map[string]*Node{
		"leaf":  {Level: 0, Entries: []Entry{{Slot: 0, CID: dataCID(1)}, {Slot: 7, CID: dataCID(2)}, {Slot: 255, CID: dataCID(3)}}},
		"inner": {Level: 2, Entries: []Entry{{Slot: 3, CID: inner}}},
	}
	for name, n := range nodes {
		data, err := Encode(n)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", "seed", name)
		if os.Getenv("WEFT_WRITE_SEEDS") != "" {
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		stored, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("seed %s: %v (regenerate with WEFT_WRITE_SEEDS=1)", name, err)
		}
		if _, err := Decode(stored); err != nil {
			t.Fatalf("seed %s does not decode: %v", name, err)
		}
	}
}
