package cluster

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/catalog"
)

// FuzzReadCatalogPush feeds a member the message another pushes: whatever
// it holds, reading it does not panic nor take more than its stated size
// (at most maxCatalogPush), and entries read frame again to the message
// read.
func FuzzReadCatalogPush(f *testing.F) {
	const peer = "12D3KooWJ34PJdu1kw5pBYKcPoGnuu4pfUDwK92YBa17Pvp2a8j6"
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	valid, err := catalogPushMessage([]catalog.Entry{
		{Key: catalog.DiskKey("vm1"), Root: blockstore.Sum(blockstore.CodecRaw, []byte("root")), Owner: peer, Epoch: 2, Version: 3,
			Writer: peer, Size: 1 << 20, BlockSize: 64 << 10, Replicas: 2, Created: t0, Modified: t0,
			Allow: []string{"10.0.0.0/8"}, Initiators: []string{"iqn.2026-01.test:host1"}, CHAP: true},
		{Key: catalog.DiskKey("gone"), Owner: peer, Epoch: 1, Version: 4, Writer: peer, Deleted: true, Modified: t0},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add(append(valid, 0))
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Add([]byte{0, 0x10, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		es, err := readCatalogPush(r)
		if read := len(b) - r.Len(); len(b) >= 4 && read > 4+min(int(binary.BigEndian.Uint32(b)), maxCatalogPush) {
			t.Fatalf("read %d bytes of a message stating %d", read, binary.BigEndian.Uint32(b))
		}
		if err != nil {
			return
		}
		msg, err := catalogPushMessage(es)
		if err != nil {
			t.Fatalf("entries read do not frame again: %v", err)
		}
		if !bytes.Equal(msg, b[:len(msg)]) {
			t.Fatalf("framed again:\n got %x\nwant %x", msg, b[:len(msg)])
		}
	})
}

// FuzzReadCatalogGet feeds a member the question another asks: whatever
// it holds, reading it does not panic nor read past the stated key (at
// most maxCatalogGetKey), and a key read frames again to the question.
func FuzzReadCatalogGet(f *testing.F) {
	valid, err := catalogGetMessage(catalog.DiskKey("vm1"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add(append(valid, 0))
	f.Add([]byte{0, 0})
	f.Add([]byte{0xff, 0xff, 'k'})
	f.Add([]byte{4})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		key, err := readCatalogGet(r)
		if read := len(b) - r.Len(); len(b) >= 2 && read > 2+min(int(binary.BigEndian.Uint16(b)), maxCatalogGetKey) {
			t.Fatalf("read %d bytes of a question stating %d", read, binary.BigEndian.Uint16(b))
		}
		if err != nil {
			return
		}
		msg, err := catalogGetMessage(key)
		if err != nil {
			t.Fatalf("key read does not frame again: %v", err)
		}
		if !bytes.Equal(msg, b[:len(msg)]) {
			t.Fatalf("framed again:\n got %x\nwant %x", msg, b[:len(msg)])
		}
	})
}
