package mesh

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGossipWaitsBehindLittleBulkData: eight streams fill a connection
// whose link sends nothing yet (a pipe no one reads) until every one waits
// in its send backlog, then a new stream writes a short message, as a
// gossip packet does. Counting the frames as the link then delivers them,
// the message comes after at most the send backlog bound plus two frames
// per stream (its first frame, and one let on before the frames ahead of
// it were counted), not after yamux's whole queue of 64 frames (1 MiB).
// The link moves only once the message is in yamux's queue: what goes
// ahead of it is what was queued ahead of it, however the goroutines are
// scheduled.
func TestGossipWaitsBehindLittleBulkData(t *testing.T) {
	local, link := net.Pipe()
	defer link.Close()
	conn, err := newMuxer().NewConn(local, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	backlog := conn.(*fairConn).backlog
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const bulkStreams = 8
	limit := sendBacklogBound + (2*bulkStreams+1)*fairChunk
	var handed atomic.Int64 // bulk bytes the streams' writes returned
	var writers sync.WaitGroup
	defer writers.Wait()
	defer conn.Close() // ends the writers blocked on a full backlog
	bulk := bytes.Repeat([]byte{'b'}, fairChunk)
	for range bulkStreams {
		s, err := conn.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		writers.Add(1)
		go func() {
			defer writers.Done()
			// Each stream may send its initial yamux window (256 KiB):
			// together far more than yamux's queue holds.
			for ctx.Err() == nil {
				n, err := s.Write(bulk)
				handed.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
	}
	// The writers fill what the connection accepts, then every one waits
	// for the backlog, which nothing empties while the link stands still.
	// A connection that accepts more than the limit without the link
	// moving has no bound to show.
	if !awaitBacklog(ctx, backlog, func(waiting int) bool {
		return waiting == bulkStreams || handed.Load() > int64(limit)
	}) {
		t.Fatalf("the bulk writers never all waited for the send backlog (%d KiB taken)", handed.Load()>>10)
	}
	if n := handed.Load(); n > int64(limit) {
		t.Fatalf("the connection took %d KiB of bulk data while its link sent nothing, want at most %d KiB", n>>10, limit>>10)
	}
	t.Logf("bulk data accepted before the link moves: %d KiB", handed.Load()>>10)

	gossip := []byte("gossip: ping")
	gossipQueued := make(chan struct{})
	writers.Add(1)
	go func() {
		defer writers.Done()
		defer close(gossipQueued)
		s, err := conn.OpenStream(ctx)
		if err != nil {
			t.Error(err)
			return
		}
		if _, err := s.Write(gossip); err != nil {
			t.Error(err)
		}
	}()
	// The message's first frame never waits for the backlog: its write
	// returns with the link still, or it has joined the bulk writers' queue.
	if !awaitBacklog(ctx, backlog, func(waiting int) bool {
		select {
		case <-gossipQueued:
			return true
		default:
			return waiting > bulkStreams
		}
	}) {
		t.Fatal("the message's write never returned nor waited for the send backlog")
	}
	select {
	case <-gossipQueued:
	default:
		t.Fatal("the message's first frame waited in the send backlog behind bulk data")
	}

	// Read the link frame by frame until the message's frame.
	_ = link.SetReadDeadline(time.Now().Add(time.Minute))
	ahead := 0
	var header [yamuxHeaderSize]byte
	for {
		if _, err := io.ReadFull(link, header[:]); err != nil {
			t.Fatalf("reading the link after %d bulk bytes: %v", ahead, err)
		}
		if header[1] != yamuxTypeData {
			continue
		}
		body := make([]byte, binary.BigEndian.Uint32(header[8:12]))
		if _, err := io.ReadFull(link, body); err != nil {
			t.Fatalf("reading the link after %d bulk bytes: %v", ahead, err)
		}
		if bytes.Equal(body, gossip) {
			break
		}
		ahead += len(body)
	}
	t.Logf("bulk data sent ahead of the message: %d KiB (limit %d KiB)", ahead>>10, limit>>10)
	if ahead > limit {
		t.Errorf("%d KiB of bulk data went ahead of the message, want at most %d KiB", ahead>>10, limit>>10)
	}
}

// TestWaitingWriteEndsOnResetOrDeadline: a bulk write waiting for room in
// a connection's send backlog (its link sends nothing) ends when another
// goroutine resets its stream or sets its write deadline to now (as the
// exchange does when a request's context ends), while the connection
// still stands, not only once the connection dies.
func TestWaitingWriteEndsOnResetOrDeadline(t *testing.T) {
	for _, how := range []string{"reset", "deadline"} {
		t.Run(how, func(t *testing.T) {
			local, link := net.Pipe()
			defer link.Close()
			conn, err := newMuxer().NewConn(local, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			bulk := bytes.Repeat([]byte{'b'}, fairChunk)
			// A first stream fills the backlog and blocks.
			filler, err := conn.OpenStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				for ctx.Err() == nil {
					if _, err := filler.Write(bulk); err != nil {
						return
					}
				}
			}()
			s, err := conn.OpenStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				for {
					if _, err := s.Write(bulk); err != nil {
						done <- err
						return
					}
				}
			}()
			// Both wait for the backlog: the link moves nothing.
			if !awaitBacklog(ctx, conn.(*fairConn).backlog, func(waiting int) bool { return waiting == 2 }) {
				t.Fatal("the writes never both waited for the send backlog")
			}
			select {
			case err := <-done:
				t.Fatalf("write ended before anything interrupted it: %v", err)
			default:
			}
			if how == "reset" {
				_ = s.Reset()
			} else {
				_ = s.SetWriteDeadline(time.Now())
			}
			select {
			case err := <-done:
				if conn.IsClosed() {
					t.Fatalf("the write ended (%v) only with the connection", err)
				}
			case <-ctx.Done():
				t.Fatal("the write never ended")
			}
		})
	}
}

// awaitBacklog polls until done, given how many writers wait in backlog's
// queue, says yes (a state the backlog reaches and holds while its link
// stands still, however long the writers take to get there), and reports
// false if ctx ends first.
func awaitBacklog(ctx context.Context, backlog *sendBacklog, done func(waiting int) bool) bool {
	for {
		backlog.mu.Lock()
		waiting := len(backlog.waiting)
		backlog.mu.Unlock()
		if done(waiting) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Millisecond):
		}
	}
}
