package transfer

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
)

// pipeNet opens every stream to serve, over a net.Pipe.
type pipeNet struct {
	loneNet
	serve meshnet.Handler
}

func (n pipeNet) Open(context.Context, meshnet.PeerID, meshnet.Protocol) (io.ReadWriteCloser, error) {
	here, there := net.Pipe()
	go n.serve(context.Background(), n.self, there)
	return here, nil
}

// receiverOpeningVolumes returns the transfer handler of a Service whose
// volumes never open, its clock, and a request for it.
func receiverOpeningVolumes(t *testing.T) (meshnet.Handler, meshnet.PeerID, receiveRequest, func(time.Duration), func(context.Context) error) {
	t.Helper()
	store := blockstore.NewMemory()
	tc, vols, clk := newTestNode(t, store)
	hn := handlerNet{loneNet{tc.self}, map[meshnet.Protocol]meshnet.Handler{}}
	if _, err := New(Config{Net: hn, Catalog: tc, Blocks: noPeers{}, Store: store, Clock: clk}); err != nil {
		t.Fatal(err)
	}
	root := writtenRoots(t, vols, 1)[0]
	archive := meshnet.TestID("archive").String()
	entry, err := catalog.Encode([]catalog.Entry{{Key: catalog.DiskKey("vm"), Owner: archive, Writer: archive, Epoch: 1, Version: 1, Root: root, Size: 1 << 20, BlockSize: 4096}})
	if err != nil {
		t.Fatal(err)
	}
	waiting := clk.Waiters() + 1 // awaitVolumes's
	return hn.handlers[Protocol], tc.self, receiveRequest{ID: "early", Source: "vm", Entry: entry, Sources: []string{archive}},
		clk.Advance, func(ctx context.Context) error { return clk.BlockUntil(ctx, waiting) }
}

// TestPushToATargetOpeningItsVolumesIsUnreachable: a receiver whose
// volumes do not open in time fails the push for want of itself, and the
// pusher sees meshnet.ErrUnreachable (so a resumed push retries it)
// although the error crossed the wire as a progress line.
func TestPushToATargetOpeningItsVolumesIsUnreachable(t *testing.T) {
	serve, target, req, advance, awaitVolumes := receiverOpeningVolumes(t)
	pusher := &Service{net: pipeNet{loneNet{meshnet.TestID("archive")}, serve}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- pusher.sendTo(ctx, target, req, func(api.TargetProgress) {}) }()
	if err := awaitVolumes(ctx); err != nil {
		t.Fatal(err)
	}
	advance(volumesWait)
	select {
	case err := <-errc:
		if !errors.Is(err, meshnet.ErrUnreachable) {
			t.Fatalf("push to a target still opening its volumes: %v, want ErrUnreachable", err)
		}
	case <-ctx.Done():
		t.Fatal("the push did not end")
	}
}

// TestProgressLineFromAnOldReceiver: a failure line without the
// unreachable field (a receiver before it) is final, as it was.
func TestProgressLineFromAnOldReceiver(t *testing.T) {
	old := func(ctx context.Context, _ meshnet.PeerID, st io.ReadWriteCloser) {
		json.NewDecoder(st).Decode(&receiveRequest{})
		b, _ := json.Marshal(api.TargetProgress{State: string(Failed), Error: "opening its volumes: peer unreachable"})
		st.Write(append(b, '\n'))
		st.Close()
	}
	pusher := &Service{net: pipeNet{loneNet{meshnet.TestID("archive")}, old}}
	err := pusher.sendTo(context.Background(), meshnet.TestID("old"), receiveRequest{ID: "x"}, func(api.TargetProgress) {})
	if err == nil || errors.Is(err, meshnet.ErrUnreachable) {
		t.Fatalf("failure from an old receiver: %v, want a final error", err)
	}
}

// TestReceiveDropsSilentPushers: a pusher that opens the protocol and
// sends nothing, and one that sends its request and never reads the
// progress, hold the receiver only for the bounds.
func TestReceiveDropsSilentPushers(t *testing.T) {
	t.Run("NoRequest", func(t *testing.T) {
		t.Parallel()
		serve, _, _, _, _ := receiverOpeningVolumes(t)
		pusher, receiver := net.Pipe()
		defer pusher.Close()
		ended := make(chan struct{})
		go func() { defer close(ended); serve(context.Background(), meshnet.TestID("archive"), receiver) }()
		receiveEnds(t, ended, "no request sent")
	})
	t.Run("NeverReads", func(t *testing.T) {
		t.Parallel()
		serve, _, req, advance, awaitVolumes := receiverOpeningVolumes(t)
		pusher, receiver := net.Pipe()
		defer pusher.Close()
		ended := make(chan struct{})
		go func() { defer close(ended); serve(context.Background(), meshnet.TestID("archive"), receiver) }()
		if err := json.NewEncoder(pusher).Encode(req); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := awaitVolumes(ctx); err != nil {
			t.Fatal(err)
		}
		advance(volumesWait) // the receiver now writes its failure, unread
		receiveEnds(t, ended, "a pusher that never reads")
	})
}

// receiveEnds waits for serveReceive to return, failing after 30 s.
func receiveEnds(t *testing.T, ended <-chan struct{}, why string) {
	t.Helper()
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatalf("serveReceive still serving after 30 s: %s", why)
	}
}
