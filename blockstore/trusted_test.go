package blockstore_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/blockstore/storetest"
)

// flipOnDisk flips a byte of data's only copy in the segment files under
// dir, behind the store's back, as a failing device would.
func flipOnDisk(t *testing.T, dir string, data []byte) {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "segments", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range segs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, data); i >= 0 {
			b[i+len(data)/2] ^= 0xff
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatal("block not found in any segment")
}

// TestGetToSendTrustsWhatThisProcessVerified: a block this process put (and
// so hashed) is read for sending without hashing it again, which shows as
// damage behind the store's back going unnoticed there, while Get, which
// scrub and local reads use, still verifies and then stops the trust. A
// reopened store trusts nothing, and Corrupt ends the trust too.
func TestGetToSendTrustsWhatThisProcessVerified(t *testing.T) {
	r := testRand(t)
	dir := t.TempDir()
	d, err := blockstore.Open(dir, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	bs := []blockstore.Block{storetest.NewBlock(r, 8<<10), storetest.NewBlock(r, 8<<10), storetest.NewBlock(r, 8<<10)}
	putAll(t, d, bs)
	ctx := testCtx(t)

	flipOnDisk(t, dir, bs[0].Data)
	if got, err := d.GetToSend(ctx, bs[0].CID, nil); err != nil || bytes.Equal(got, bs[0].Data) {
		t.Fatalf("GetToSend of a block put by this process: err %v, same bytes %v; want the damaged bytes, unhashed", err, bytes.Equal(got, bs[0].Data))
	}
	if _, err := d.Get(ctx, bs[0].CID); !errors.Is(err, blockstore.ErrCorrupt) {
		t.Fatalf("Get of the damaged block: %v, want ErrCorrupt", err)
	}
	if _, err := d.GetToSend(ctx, bs[0].CID, nil); !errors.Is(err, blockstore.ErrCorrupt) {
		t.Fatalf("GetToSend after Get found the damage: %v, want ErrCorrupt", err)
	}

	if err := storetest.CorruptDisk(d, bs[1].CID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.GetToSend(ctx, bs[1].CID, nil); !errors.Is(err, blockstore.ErrCorrupt) {
		t.Fatalf("GetToSend of a Corrupt block: %v, want ErrCorrupt", err)
	}

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	flipOnDisk(t, dir, bs[2].Data)
	d = openDisk(t, dir, testOptions())
	if _, err := d.GetToSend(ctx, bs[2].CID, nil); !errors.Is(err, blockstore.ErrCorrupt) {
		t.Fatalf("GetToSend after a reopen of a block damaged while closed: %v, want ErrCorrupt", err)
	}
}
