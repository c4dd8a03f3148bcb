package exchange

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/internal/memstat"
	"github.com/weft-mesh/weft/internal/peerlimit"
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
		body, err := readFrame(bufio.NewReader(s), into(&buf))
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

// hostileServer serves store on peer "b" of a memnet with short time
// bounds, and returns the server and the network.
func hostileServer(t *testing.T, store Store) (*Server, *memnet.Network) {
	t.Helper()
	n := memnet.New()
	t.Cleanup(n.Close)
	srv := &Server{Store: store, idleBound: 200 * time.Millisecond, stallWindow: 200 * time.Millisecond}
	n.Listen("b", srv.ServeStream)
	return srv, n
}

// waitReset reads s until it fails, within a deadline: the server reset
// or closed it.
func waitReset(t *testing.T, s io.Reader, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, s)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: stream still open after 10 s, want it reset", what)
	}
}

// waitTurnsFree waits, within a deadline, until no stream of peer holds or
// waits for a turn of srv's: the server's goroutine gives a turn back just
// after the reset its client sees.
func waitTurnsFree(t *testing.T, srv *Server, peer string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		callers, held := srv.turns.Load(peer)
		if callers == 0 && held == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the streams were reset: %d streams waiting or served, %d served, want none", callers, held)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An admitted peer that opens a stream and sends nothing, or sends a
// request a byte at a time, gets its stream reset once the idle bound
// passed or a window went by with too little of the request, and the
// server is free of it.
func TestServerResetsIdleAndSlowStreams(t *testing.T) {
	srv, n := hostileServer(t, blockstore.NewMemory())
	ctx := context.Background()

	idle, err := n.Dialer("a").OpenStream(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	waitReset(t, idle, "idle stream")

	slow, err := n.Dialer("a").OpenStream(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	req := frame(encodedRequest(t, request{op: opHas, cids: []cid.Cid{blockstore.Sum(blockstore.CodecRaw, []byte("x"))}}))
	trickled := make(chan error, 1)
	go func() {
		for _, b := range req {
			if _, err := slow.Write([]byte{b}); err != nil {
				trickled <- err
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		trickled <- nil
	}()
	waitReset(t, slow, "slow sender")
	if err := <-trickled; err == nil {
		t.Fatal("the slow sender wrote its whole request: want its stream reset midway")
	}
	waitTurnsFree(t, srv, "a")
}

// throttled is a stream whose writes go out in chunks of 4 KiB, one every
// 10 ms: a slow link, on which a Put takes many stall windows.
type throttled struct{ io.ReadWriteCloser }

func (s throttled) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), 4<<10)]
		time.Sleep(10 * time.Millisecond)
		m, err := s.ReadWriteCloser.Write(chunk)
		n += m
		if err != nil {
			return n, err
		}
		p = p[len(chunk):]
	}
	return n, nil
}

type throttledDialer struct{ Dialer }

func (d throttledDialer) OpenStream(ctx context.Context, peer string) (io.ReadWriteCloser, error) {
	s, err := d.Dialer.OpenStream(ctx, peer)
	if err != nil {
		return nil, err
	}
	return throttled{s}, nil
}

// An honest Put over a slow link goes through however long it takes: it
// spans many stall windows (here 1 MiB at 400 KiB/s with 400 ms windows,
// some 6 windows), each bringing more than requestMinProgress (the
// 160 KiB a window brings leaves room for a loaded machine's late
// sleeps: with 100 ms windows, 2.5 times the minimum, a busy CI run reset
// it). A bound
// on the whole request's time, as before, reset it and the client sent it
// again in full, for ever while the link stayed slow.
func TestServerKeepsSlowHonestPut(t *testing.T) {
	store := blockstore.NewMemory()
	n := memnet.New()
	t.Cleanup(n.Close)
	srv := &Server{Store: store, stallWindow: 400 * time.Millisecond}
	n.Listen("b", srv.ServeStream)
	var blocks []blockstore.Block
	for i := range 4 {
		blocks = append(blocks, blockstore.NewBlock(blockstore.CodecRaw, bytes.Repeat([]byte{byte(i)}, 256<<10)))
	}
	// One stream only: a retry on a fresh stream would hide a reset.
	rw, err := throttledDialer{n.Dialer("a")}.OpenStream(context.Background(), "b")
	if err != nil {
		t.Fatal(err)
	}
	c := newConn(rw)
	defer c.close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := exchange(ctx, c, request{op: opPut, blocks: blocks}, false)
	if err != nil {
		t.Fatalf("put of 1 MiB over a slow link: %v, want it stored", err)
	}
	if resp.code != codeOK {
		t.Fatalf("put of 1 MiB over a slow link: code %d: %s", resp.code, resp.message)
	}
	for _, b := range blocks {
		if ok, err := store.Has(ctx, b.CID); err != nil || !ok {
			t.Fatalf("block %s stored: got %v (%v), want true", b.CID, ok, err)
		}
	}
}

// An admitted peer that opens many streams, each announcing a full frame,
// makes the server hold at most MaxServedPerPeer frame buffers, not one
// per stream; the server goes on serving another peer meanwhile, and
// frees everything once the streams are reset. The frame limit is scaled
// down to 1 MiB (a frame's buffer is then made whole on its header), so
// that the test holds a few dozen MiB, and a server that held a buffer per
// stream would hold twice its bound, not gigabytes.
func TestServerMemoryBoundedUnderManyStreams(t *testing.T) {
	const (
		streams    = 100
		frameLimit = initialFrameBuffer
	)
	store := blockstore.NewMemory()
	n := memnet.New()
	t.Cleanup(n.Close)
	// Long bounds: the attack holds until the test ends it.
	srv := &Server{Store: store, FrameLimit: frameLimit, idleBound: time.Minute, stallWindow: time.Minute}
	n.Listen("b", srv.ServeStream)
	ctx := context.Background()

	before := memstat.LiveHeap()
	attack := binary.AppendUvarint(nil, frameLimit)
	var open []io.ReadWriteCloser
	defer func() {
		for _, s := range open {
			s.Close()
		}
	}()
	for range streams {
		s, err := n.Dialer("evil").OpenStream(ctx, "b")
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, s)
		if _, err := s.Write(attack); err != nil {
			t.Fatal(err)
		}
	}
	// Every attacking stream has sent its header: MaxServedPerPeer made
	// their frame buffers, the others wait for a turn.
	deadline := time.Now().Add(30 * time.Second)
	for {
		users, held := srv.turns.Load("evil")
		if users == streams && held == min(streams, MaxServedPerPeer) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("attack not in place after 30 s: %d streams waiting or served, %d served, want %d and %d", users, held, streams, min(streams, MaxServedPerPeer))
		}
		time.Sleep(10 * time.Millisecond)
	}
	during := memstat.LiveHeap()
	// Each turn holds a frame buffer; each stream, the turn's or not, its
	// 128 KiB of stream buffers and what the memnet pipe keeps of it.
	const perStream = 128<<10 + 16<<10
	bound := uint64(MaxServedPerPeer*frameLimit + streams*perStream + 16<<20)
	grew := int64(during) - int64(before)
	t.Logf("heap: %d MiB before, %d MiB during the attack of %d streams (bound on the growth %d MiB; a buffer per stream would be %d MiB)", before>>20, during>>20, streams, bound>>20, streams*frameLimit>>20)
	if grew > int64(bound) {
		t.Fatalf("heap grew by %d MiB under %d streams, want at most %d MiB", grew>>20, streams, bound>>20)
	}

	// Another peer is served meanwhile.
	honest := &Client{Dialer: n.Dialer("honest")}
	defer honest.Close()
	b := blockstore.NewBlock(blockstore.CodecRaw, []byte("honest block"))
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := honest.Put(cctx, "b", []blockstore.Block{b}); err != nil {
		t.Fatalf("honest put during the attack: %v", err)
	}
	if ok, err := store.Has(ctx, b.CID); err != nil || !ok {
		t.Fatalf("honest block stored: got %v (%v), want true", ok, err)
	}
	if got, err := honest.Get(cctx, "b", []cid.Cid{b.CID}); err != nil || len(got) != 1 {
		t.Fatalf("honest get during the attack: got %d blocks (%v), want 1", len(got), err)
	}
}

// Four admitted identities of one attacker, each opening many streams that
// announce a full frame, make the server hold no more frame bytes than the
// node's budget (Frames), though their turns together would allow four
// times as many; once the attack ends, an honest peer is served.
func TestServerFrameBudgetHoldsAcrossPeers(t *testing.T) {
	const (
		identities = 4
		streams    = 40 // per identity
		frameLimit = initialFrameBuffer
		budget     = 8 * frameLimit
	)
	store := blockstore.NewMemory()
	n := memnet.New()
	t.Cleanup(n.Close)
	frames := peerlimit.NewBytes(budget)
	srv := &Server{Store: store, FrameLimit: frameLimit, Frames: frames, idleBound: time.Minute, stallWindow: time.Minute}
	n.Listen("b", srv.ServeStream)
	ctx := context.Background()

	before := memstat.LiveHeap()
	attack := binary.AppendUvarint(nil, frameLimit)
	var open []io.ReadWriteCloser
	ended := false
	endAttack := func() {
		if !ended {
			for _, s := range open {
				s.Close()
			}
			ended = true
		}
	}
	defer endAttack()
	for i := range identities {
		for range streams {
			s, err := n.Dialer(fmt.Sprintf("evil%d", i)).OpenStream(ctx, "b")
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, s)
			if _, err := s.Write(attack); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Every identity holds its turns; together they hold the budget.
	waitFor(t, "attack in place", func() bool {
		for i := range identities {
			if users, held := srv.turns.Load(fmt.Sprintf("evil%d", i)); users != streams || held != MaxServedPerPeer {
				return false
			}
		}
		return frames.Held() == budget
	})
	during := memstat.LiveHeap()
	// The budget's frames, and each stream's 128 KiB of stream buffers and
	// what the memnet pipe keeps of it.
	const perStream = 128<<10 + 16<<10
	bound := uint64(budget + identities*streams*perStream + 16<<20)
	grew := int64(during) - int64(before)
	t.Logf("heap: %d MiB before, %d MiB during the attack of %d identities × %d streams (bound on the growth %d MiB; their turns alone would allow %d MiB)",
		before>>20, during>>20, identities, streams, bound>>20, identities*MaxServedPerPeer*frameLimit>>20)
	if grew > int64(bound) {
		t.Fatalf("heap grew by %d MiB, want at most %d MiB", grew>>20, bound>>20)
	}

	endAttack()
	waitFor(t, "the budget given back", func() bool { return frames.Held() == 0 })
	honest := &Client{Dialer: n.Dialer("honest")}
	defer honest.Close()
	b := blockstore.NewBlock(blockstore.CodecRaw, []byte("honest block"))
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := honest.Put(cctx, "b", []blockstore.Block{b}); err != nil {
		t.Fatalf("honest put after the attack: %v", err)
	}
	if got, err := honest.Get(cctx, "b", []cid.Cid{b.CID}); err != nil || len(got) != 1 {
		t.Fatalf("honest get after the attack: got %d blocks (%v), want 1", len(got), err)
	}
}
