package mesh

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/weft-mesh/weft/cluster"
	"github.com/weft-mesh/weft/cluster/transfer"
	"github.com/weft-mesh/weft/mesh/exchange"
	"github.com/weft-mesh/weft/mesh/meshnet"
)

// A peer without the mesh secret, knowing a member's address, gets no
// stream on any protocol a node serves, and none of their handlers runs:
// blocks, catalog pushes, transfers and crowd fetches, through Open and
// through a raw libp2p stream that skips the mesh's own dialling.
func TestWrongSecretIsRefusedOnEveryWeftProtocol(t *testing.T) {
	protos := []meshnet.Protocol{exchange.Protocol, cluster.CatalogProtocol, transfer.Protocol, transfer.CrowdProtocol}
	a := newTestMesh(t, Config{Secret: newSecret(t), Site: "a"})
	var served atomic.Int64
	for _, p := range protos {
		a.Handle(p, func(_ context.Context, _ meshnet.PeerID, s io.ReadWriteCloser) {
			served.Add(1)
			_, _ = io.Copy(s, s)
		})
	}
	w := newTestMesh(t, Config{Secret: newSecret(t), Site: "w"})
	if _, err := w.Learn(a.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range protos {
		if s, err := w.Open(ctx, meshnet.PeerID(a.ID()), p); err == nil {
			s.Close()
			t.Errorf("open %s with the wrong secret: got a stream, want refused", p)
		} else if !errors.Is(err, ErrNotAdmitted) {
			t.Errorf("open %s with the wrong secret: got %v, want ErrNotAdmitted", p, err)
		}
		w.host.Peerstore().AddAddrs(a.ID(), a.host.Addrs(), time.Hour)
		if err := rawExchange(ctx, w, a.ID(), protocol.ID(p)); err == nil {
			t.Errorf("raw stream on %s with the wrong secret: got an answer, want reset", p)
		}
	}
	if n := served.Load(); n != 0 {
		t.Errorf("handlers ran %d times for the outsider, want 0", n)
	}
}
