package blockstore

import (
	"context"
	"sync"

	"github.com/ipfs/go-cid"
)

// maxTrusted bounds the records remembered as verified: 1<<18 records of
// 64 KiB blocks cover 16 GiB, in about 10 MiB of memory.
const maxTrusted = 1 << 18

// recordAt names one record: segments are never reused or rewritten in
// place, so a record at a place stays the same bytes while the place exists.
type recordAt struct {
	seg uint32
	off int64
}

// trustedRecords remembers records this process hashed: written by a put,
// which verifies every block first, or verified by a read. Sending them to
// a peer need not hash them again, since the receiver verifies every block
// it gets anyway; Get and scrub still verify every read. It forgets
// everything when full rather than keep an order for eviction: hashing a
// block again is the whole cost of forgetting it.
type trustedRecords struct {
	mu   sync.Mutex
	recs map[recordAt]struct{}
}

func (t *trustedRecords) add(ls ...location) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.recs == nil || len(t.recs)+len(ls) > maxTrusted {
		t.recs = make(map[recordAt]struct{}, min(maxTrusted, 2*len(ls)))
	}
	for _, l := range ls {
		t.recs[recordAt{l.seg, l.off}] = struct{}{}
	}
}

func (t *trustedRecords) has(l location) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.recs[recordAt{l.seg, l.off}]
	return ok
}

func (t *trustedRecords) forget(l location) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.recs, recordAt{l.seg, l.off})
}

// GetToSend is Get for sending a block to a peer, which verifies it on
// arrival: a block this process wrote (hashed before it
// was stored) or verified on an earlier read is returned without hashing
// it again. Every other block is verified as Get does. Scrub and local
// reads use Get.
// It appends the block to dst and returns the result, so that a response
// of many blocks reads into one reused buffer.
func (d *Disk) GetToSend(ctx context.Context, c cid.Cid, dst []byte) ([]byte, error) {
	return d.get(ctx, c, true, dst)
}
