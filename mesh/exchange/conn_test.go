package exchange

import (
	"bufio"
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	"github.com/weft-mesh/weft/blockstore"
)

// TestPooledFramesOfDifferentSizes reads frames of different sizes back to
// back through conns whose buffers go back to framePool between frames,
// as the server does, and checks each body arrives whole and unchanged.
func TestPooledFramesOfDifferentSizes(t *testing.T) {
	sizes := []int{3 << 20, 10, MaxFrameSize, 0, initialFrameBuffer + 1, 64 << 10, 5 << 20}
	rng := rand.NewChaCha8([32]byte{7})
	var wire bytes.Buffer
	bodies := make([][]byte, len(sizes))
	for i, n := range sizes {
		bodies[i] = make([]byte, n)
		rng.Read(bodies[i])
		w := &conn{w: bufio.NewWriter(&wire)}
		w.writeBuffer().Write(bodies[i])
		if err := w.writeFrame(); err != nil {
			t.Fatalf("write frame %d: %v", i, err)
		}
		w.release()
	}
	c := &conn{r: bufio.NewReader(&wire)}
	for i, want := range bodies {
		got, err := c.readFrame()
		if err != nil {
			t.Fatalf("read frame %d (%d bytes): %v", i, len(want), err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %d bytes read differ from the %d written", i, len(got), len(want))
		}
		c.release()
	}
}

// TestDecodedBlocksOutliveTheNextFrame decodes Get responses of different
// sizes back to back from one stream and checks that the blocks of each
// still hold their bytes after the later ones were read: the client reads
// every response into a buffer of its own, which its blocks share.
func TestDecodedBlocksOutliveTheNextFrame(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{9})
	var wire bytes.Buffer
	var sent [][]blockstore.Block
	for _, shape := range []struct{ n, size int }{{3, 1 << 20}, {5, 100}, {2, 300}, {1, 70000}, {4, 0}} {
		blocks := make([]blockstore.Block, shape.n)
		for i := range blocks {
			data := make([]byte, shape.size)
			rng.Read(data)
			data = append(data, byte(len(sent)), byte(i)) // distinct even when empty
			blocks[i] = blockstore.NewBlock(blockstore.CodecRaw, data)
		}
		sent = append(sent, blocks)
		w := &conn{w: bufio.NewWriter(&wire)}
		if err := encodeResponse(w.writeBuffer(), response{blocks: blocks, next: len(blocks)}); err != nil {
			t.Fatal(err)
		}
		if err := w.writeFrame(); err != nil {
			t.Fatal(err)
		}
		w.release()
	}
	c := &conn{r: bufio.NewReader(&wire)}
	var got []response
	for range sent {
		body, err := c.readOwnedFrame()
		if err != nil {
			t.Fatal(err)
		}
		resp, err := decodeResponse(body)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, resp)
		c.release()
	}
	for i, resp := range got {
		if len(resp.blocks) != len(sent[i]) {
			t.Fatalf("response %d: %d blocks, want %d", i, len(resp.blocks), len(sent[i]))
		}
		if err := verifyAll(resp.blocks); err != nil {
			t.Fatalf("response %d after later frames were read: %v", i, err)
		}
	}
}

// TestPushesOfDifferentSizesThroughOneStream pushes batches of different
// sizes on one pooled stream, so the server decodes each into the frame
// buffer the previous one used, and checks every block was stored intact.
func TestPushesOfDifferentSizesThroughOneStream(t *testing.T) {
	ctx := context.Background()
	store := blockstore.NewMemory()
	defer store.Close()
	client := newConn(rawStream(t, store))
	rng := rand.NewChaCha8([32]byte{11})
	var all []blockstore.Block
	for _, shape := range []struct{ n, size int }{{8, 1 << 20}, {3, 10}, {2, 64 << 10}, {1, 3 << 20}} {
		blocks := make([]blockstore.Block, shape.n)
		for i := range blocks {
			data := make([]byte, shape.size)
			rng.Read(data)
			blocks[i] = blockstore.NewBlock(blockstore.CodecRaw, data)
		}
		all = append(all, blocks...)
		resp, err := sendAndReceive(client, request{op: opPut, blocks: blocks}, false)
		if err != nil || resp.code != codeOK {
			t.Fatalf("put %d blocks of %d bytes: %v %+v", shape.n, shape.size, err, resp)
		}
		client.release()
	}
	for _, b := range all {
		data, err := store.Get(ctx, b.CID)
		if err != nil || !bytes.Equal(data, b.Data) {
			t.Fatalf("block %s: stored %d bytes, err %v", b.CID, len(data), err)
		}
	}
}

// TestEmptyBlocksDecode: a block with no bytes, nil or not, encodes as an
// empty byte string or as null, and both decode to an empty block that
// verifies.
func TestEmptyBlocksDecode(t *testing.T) {
	for _, data := range [][]byte{nil, {}} {
		b := blockstore.NewBlock(blockstore.CodecRaw, data)
		b.Data = data
		var buf bytes.Buffer
		if err := encodeResponse(&buf, response{blocks: []blockstore.Block{b}, next: 1}); err != nil {
			t.Fatal(err)
		}
		resp, err := decodeResponse(buf.Bytes())
		if err != nil {
			t.Fatalf("decode an empty block (nil %v): %v", data == nil, err)
		}
		if len(resp.blocks) != 1 || len(resp.blocks[0].Data) != 0 {
			t.Fatalf("empty block decoded as %+v", resp.blocks)
		}
		if err := verifyAll(resp.blocks); err != nil {
			t.Fatal(err)
		}
	}
}

// into gives readFrame buf for every frame.
func into(buf *bytes.Buffer) func(uint64) (*bytes.Buffer, error) {
	return func(uint64) (*bytes.Buffer, error) { return buf, nil }
}
