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
// whose link sends nothing yet (a pipe no one reads), then a new stream
// writes a short message, as a gossip packet does. Counting the frames as
// the link then delivers them, the message comes after at most the send
// backlog bound plus a frame per stream (each stream's first frame, and
// one let on as the backlog falls), not after yamux's whole queue of 64
// frames (1 MiB).
func TestGossipWaitsBehindLittleBulkData(t *testing.T) {
	local, link := net.Pipe()
	defer link.Close()
	conn, err := newMuxer().NewConn(local, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const bulkStreams = 8
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
	// The writers fill what the connection accepts, then block.
	for last, still := int64(-1), 0; still < 3; {
		time.Sleep(100 * time.Millisecond)
		if n := handed.Load(); n == last && n > 0 {
			still++
		} else {
			last, still = n, 0
		}
	}
	t.Logf("bulk data accepted before the link moves: %d KiB", handed.Load()>>10)

	gossip := []byte("gossip: ping")
	writers.Add(1)
	go func() {
		defer writers.Done()
		s, err := conn.OpenStream(ctx)
		if err != nil {
			t.Error(err)
			return
		}
		if _, err := s.Write(gossip); err != nil {
			t.Error(err)
		}
	}()

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
	limit := sendBacklogBound + (2*bulkStreams+1)*fairChunk
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
			// Both block: the link moves nothing.
			time.Sleep(300 * time.Millisecond)
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
