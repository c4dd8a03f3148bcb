package transfer

import (
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
)

// TestReceivesOfOnePusherAreBounded: a member sending many transfer
// requests at once has at most maxReceivesPerPeer of them run; the others
// wait for a turn, and leave as soon as their pusher closes the stream;
// another pusher's request is not held up behind them.
func TestReceivesOfOnePusherAreBounded(t *testing.T) {
	const requests = 3 * maxReceivesPerPeer
	store := blockstore.NewMemory()
	tc, vols, clk := newTestNode(t, store)
	hn := handlerNet{loneNet{tc.self}, map[meshnet.Protocol]meshnet.Handler{}}
	// The volumes never open: a receive with a turn waits in awaitVolumes.
	s, err := New(Config{Net: hn, Catalog: tc, Blocks: noPeers{}, Store: store, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	serve := hn.handlers[Protocol]
	root := writtenRoots(t, vols, 1)[0]
	request := func(pusher meshnet.PeerID) receiveRequest {
		entry, err := catalog.Encode([]catalog.Entry{{Key: catalog.DiskKey("vm"), Owner: pusher.String(), Writer: pusher.String(), Epoch: 1, Version: 1, Root: root, Size: 1 << 20, BlockSize: 4096}})
		if err != nil {
			t.Fatal(err)
		}
		return receiveRequest{ID: "x", Source: "vm", Entry: entry, Sources: []string{pusher.String()}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// send sends a request from a pusher that reads its progress lines
	// into the channel returned.
	send := func(from meshnet.PeerID) (net.Conn, <-chan progressLine) {
		pusher, receiver := net.Pipe()
		t.Cleanup(func() { pusher.Close() })
		go serve(ctx, from, receiver)
		if err := json.NewEncoder(pusher).Encode(request(from)); err != nil {
			t.Fatal(err)
		}
		lines := make(chan progressLine, 16)
		go func() {
			_, _, _ = readProgress(pusher, func(p api.TargetProgress) { lines <- progressLine{TargetProgress: p} })
		}()
		return pusher, lines
	}
	waitLoad := func(who meshnet.PeerID, callers, held int) {
		t.Helper()
		for {
			c, h := s.receives.Load(who.String())
			if c == callers && h == held {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("receives of %s: got %d waiting or running, %d running, want %d and %d", who, c, h, callers, held)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	evil, other := meshnet.TestID("evil"), meshnet.TestID("other")
	var streams []net.Conn
	for i := range requests {
		st, lines := send(evil)
		streams = append(streams, st)
		waitLoad(evil, i+1, min(i+1, maxReceivesPerPeer))
		if i < maxReceivesPerPeer {
			continue
		}
		// A queued request is told so: its transfer runs, at 0 bytes.
		select {
		case l := <-lines:
			if State(l.State) != Running || l.Bytes != 0 {
				t.Fatalf("queued request %d: first line %+v, want running at 0 bytes", i, l.TargetProgress)
			}
		case <-ctx.Done():
			t.Fatalf("queued request %d: no progress line", i)
		}
	}
	send(other)
	waitLoad(other, 1, 1)
	// A waiting request (the last sent) whose pusher goes leaves the
	// queue.
	streams[len(streams)-1].Close()
	waitLoad(evil, requests-1, maxReceivesPerPeer)
}
