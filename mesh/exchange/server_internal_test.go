package exchange

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/memnet"
)

// rawStream dials a server on a memnet and returns the raw stream, for
// sending it what no Client would.
func rawStream(t *testing.T, store Store) io.ReadWriteCloser {
	t.Helper()
	n := memnet.New()
	t.Cleanup(n.Close)
	srv := &Server{Store: store}
	n.Listen("b", srv.ServeStream)
	s, err := n.Dialer("a").OpenStream(context.Background(), "b")
	if err != nil {
		t.Fatalf("OpenStream: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func frame(body []byte) []byte {
	return append(binary.AppendUvarint(nil, uint64(len(body))), body...)
}

func encodedRequest(t *testing.T, r request) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := encodeRequest(&buf, r); err != nil {
		t.Fatalf("encodeRequest: %v", err)
	}
	return buf.Bytes()
}

// readReply reads what the server sends back within a deadline: a response,
// or nil once the stream ends.
func readReply(t *testing.T, s io.ReadWriteCloser) *response {
	t.Helper()
	type result struct {
		resp *response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		var buf bytes.Buffer
		body, err := readFrame(bufio.NewReader(s), &buf, nil)
		if err != nil {
			done <- result{err: err}
			return
		}
		resp, err := decodeResponse(body)
		done <- result{resp: &resp, err: err}
	}()
	select {
	case r := <-done:
		if errors.Is(r.err, io.EOF) {
			return nil
		}
		if r.err != nil {
			t.Fatalf("read reply: %v", r.err)
		}
		return r.resp
	case <-time.After(5 * time.Second):
		t.Fatal("no reply and no close within 5s")
		return nil
	}
}

func TestServerRefusesBadInput(t *testing.T) {
	c := blockstore.NewBlock(blockstore.CodecRaw, []byte("x")).CID
	tooMany := make([][]byte, MaxCIDs+1)
	for i := range tooMany {
		tooMany[i] = c.Bytes()
	}
	manyCIDs, err := encMode.Marshal(wireRequest{Op: opGet, CIDs: tooMany})
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	unknownField, err := encMode.Marshal(map[int]any{1: 1, 2: [][]byte{c.Bytes()}, 9: "surprise"})
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	cases := []struct {
		name  string
		input []byte
		reply bool // a bad-request reply before the close, rather than only a close
	}{
		{"oversized frame", binary.AppendUvarint(nil, MaxFrameSize+1), true},
		{"overflowing length", bytes.Repeat([]byte{0xff}, 11), false},
		{"empty frame", frame(nil), true},
		{"junk body", frame([]byte("\xff\x00garbage")), true},
		{"unknown op", frame(encodedRequest(t, request{op: 9, cids: []cid.Cid{c}})), true},
		{"unknown field", frame(unknownField), true},
		{"too many CIDs", frame(manyCIDs), true},
		{"get without CIDs", frame(encodedRequest(t, request{op: opGet})), true},
		{"put without blocks", frame(encodedRequest(t, request{op: opPut})), true},
		{"truncated frame", frame(encodedRequest(t, request{op: opHas, cids: []cid.Cid{c}}))[:10], false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := rawStream(t, blockstore.NewMemory())
			if _, err := s.Write(tc.input); err != nil {
				t.Fatalf("write: %v", err)
			}
			if !tc.reply {
				// The server waits for more bytes; ending the stream must
				// end it too, which net.Close in cleanup waits for.
				s.Close()
				return
			}
			resp := readReply(t, s)
			if resp == nil || resp.code != codeBadRequest {
				t.Fatalf("reply: got %+v, want a bad-request response", resp)
			}
			if again := readReply(t, s); again != nil {
				t.Fatalf("after bad request: got %+v, want the stream closed", again)
			}
		})
	}
}

func TestServerGetStopsAtPayloadLimit(t *testing.T) {
	ctx := context.Background()
	store := blockstore.NewMemory()
	var cids []cid.Cid
	for i := range 300 {
		data := bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 32<<10) // 64 KiB each
		b := blockstore.NewBlock(blockstore.CodecRaw, data)
		if err := store.Put(ctx, b); err != nil {
			t.Fatalf("Put: %v", err)
		}
		cids = append(cids, b.CID)
	}
	srv := &Server{Store: store}
	resp := srv.get(ctx, &conn{}, slog.New(slog.DiscardHandler), cids)
	if want := MaxGetPayload / (64 << 10); resp.next != want || len(resp.blocks) != want {
		t.Fatalf("get of 300 × 64 KiB: got next %d with %d blocks, want %d and %d", resp.next, len(resp.blocks), want, want)
	}
}
