package heal

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
)

// appendingStore is a Memory store with blockstore.Disk's GetAppend, which
// counts its calls.
type appendingStore struct {
	*blockstore.Memory
	sends int
}

func (s *appendingStore) GetAppend(ctx context.Context, c cid.Cid, dst []byte) ([]byte, error) {
	s.sends++
	data, err := s.Get(ctx, c)
	if err != nil {
		return nil, err
	}
	return append(dst, data...), nil
}

// TestFetchingStoreGetAppend: a FetchingStore reads a local block with the
// local store's GetAppend, and a missing one from the mesh, each appended
// to dst.
func TestFetchingStoreGetAppend(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	net, ids := newTestNet(t, rng, "a", "b")
	root := writeDisk(t, rng, net.stores[ids[0]], 4)
	cids := allCIDs(t, net.stores[ids[0]], root)
	local := cids[0]
	data, err := net.stores[ids[0]].Get(ctx, local)
	if err != nil {
		t.Fatal(err)
	}
	if err := net.stores[ids[1]].Put(ctx, blockstore.Block{CID: local, Data: data}); err != nil {
		t.Fatal(err)
	}
	ss := &appendingStore{Memory: net.stores[ids[1]]}
	fs := &FetchingStore{Store: ss, Self: ids[1], Peers: net.clients[ids[1]], Members: net.members}
	prefix := []byte("prefix")
	for _, c := range []cid.Cid{local, cids[1]} {
		out, err := fs.GetAppend(ctx, c, bytes.Clone(prefix))
		if err != nil {
			t.Fatalf("GetAppend(%s): %v", c, err)
		}
		if !bytes.HasPrefix(out, prefix) || blockstore.Verify(c, out[len(prefix):]) != nil {
			t.Fatalf("GetAppend(%s) did not append the block to dst", c)
		}
	}
	if ss.sends != 2 {
		t.Fatalf("local GetAppend called %d times, want 2 (the local block, then the missing one)", ss.sends)
	}
	if ok, _ := ss.Has(ctx, cids[1]); !ok {
		t.Fatalf("the block fetched from the mesh was not kept")
	}
}
