package exchange_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/exchange"
)

type unreachable struct{}

func (unreachable) OpenStream(context.Context, string) (io.ReadWriteCloser, error) {
	return nil, errors.New("peer unreachable")
}

// TestErrorsNamePeersInBase58: a peer is raw peer ID bytes; errors print
// its base58 form, as libp2p and the CLI do, never the raw bytes.
func TestErrorsNamePeersInBase58(t *testing.T) {
	raw := "\x00\x24\x08\x01\x12\x20" + strings.Repeat("\xfe", 32)
	c := &exchange.Client{Dialer: unreachable{}}
	defer c.Close()
	b := blockstore.NewBlock(blockstore.CodecRaw, []byte("x"))
	_, err := c.Get(context.Background(), raw, []cid.Cid{b.CID})
	if err == nil {
		t.Fatal("Get from an unreachable peer succeeded")
	}
	if msg := err.Error(); strings.Contains(msg, raw) || !strings.Contains(msg, exchange.PeerName(raw)) {
		t.Fatalf("error %q: want the peer named %s, not by its raw bytes", msg, exchange.PeerName(raw))
	}
}
