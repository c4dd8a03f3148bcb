package mesh

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
)

// Over TCP, yamux queues every stream's frames in one FIFO (64 frames) in
// front of the socket: a gossip message waited behind up to 1 MiB of block
// data, seconds on a capped link, and a member whose acks waited that long
// was declared dead. fairMuxer keeps that queue short and shared fairly:
// a stream past its first frame's worth of bytes (bulk data) hands yamux
// its next frame only while less than sendBacklogBound of data is queued,
// waiting its turn in FIFO order with the other streams' frames; a new
// stream's first bytes (a gossip packet, an ack, a request) never wait, so
// they are sent behind at most that bound.
const (
	// sendBacklogBound is the data a connection queues in yamux ahead of
	// the socket: 4 frames, 50 ms on a 10 Mbit/s share of a link. With
	// 128 KiB (and the socket's 128 KiB unsent) a live member sharing 10
	// Mbit/s links with a push was still declared dead now and then.
	sendBacklogBound = 64 << 10
	// yamuxHeaderSize is a yamux frame's header (spec: version, type,
	// flags, stream id, length).
	yamuxHeaderSize = 12
	// fairChunk is the data of one full frame: the unit in which bulk
	// streams take turns.
	fairChunk = yamuxFrameSize - yamuxHeaderSize
	// freshStreamBytes is what a stream sends before it counts as bulk.
	freshStreamBytes = fairChunk
	// yamuxTypeData is the frame type that carries stream data.
	yamuxTypeData = 0
)

// fairMuxer is yamux whose connections send fairly (above).
type fairMuxer struct{ yamux *yamux.Transport }

var _ network.Multiplexer = fairMuxer{}

func (m fairMuxer) NewConn(nc net.Conn, isServer bool, scope network.PeerScope) (network.MuxedConn, error) {
	backlog := &sendBacklog{}
	c, err := m.yamux.NewConn(&frameMeter{Conn: nc, backlog: backlog}, isServer, scope)
	if err != nil {
		return nil, err
	}
	return &fairConn{MuxedConn: c, backlog: backlog}, nil
}

// fairConn hands out streams that share its send backlog.
type fairConn struct {
	network.MuxedConn
	backlog *sendBacklog
}

func (c *fairConn) OpenStream(ctx context.Context) (network.MuxedStream, error) {
	s, err := c.MuxedConn.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	return newFairStream(s, c.backlog), nil
}

func (c *fairConn) AcceptStream() (network.MuxedStream, error) {
	s, err := c.MuxedConn.AcceptStream()
	if err != nil {
		return nil, err
	}
	return newFairStream(s, c.backlog), nil
}

// fairStream writes one frame at a time, each past its first
// freshStreamBytes only when the connection's backlog has room.
type fairStream struct {
	network.MuxedStream
	backlog *sendBacklog
	sent    atomic.Int64

	mu            sync.Mutex
	writeDeadline time.Time
	closed        bool
	// changed is closed (and replaced) when the write deadline changes or
	// the stream is closed or reset, to end a wait for the backlog that
	// those decide differently now.
	changed chan struct{}
}

func newFairStream(s network.MuxedStream, backlog *sendBacklog) *fairStream {
	return &fairStream{MuxedStream: s, backlog: backlog, changed: make(chan struct{})}
}

func (s *fairStream) Write(b []byte) (int, error) {
	var total int
	for total < len(b) {
		chunk := b[total:min(len(b), total+fairChunk)]
		if s.sent.Load() >= freshStreamBytes {
			s.awaitTurn()
		}
		n, err := s.MuxedStream.Write(chunk)
		s.backlog.queued(n)
		s.sent.Add(int64(n))
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// awaitTurn waits for the backlog to let this stream's next frame on.
// Whatever ends the wait (its turn, a passed deadline, the stream or
// connection closed), yamux's write that follows reports what it means.
func (s *fairStream) awaitTurn() {
	for {
		s.mu.Lock()
		deadline, closed, changed := s.writeDeadline, s.closed, s.changed
		s.mu.Unlock()
		if closed || s.backlog.wait(deadline, changed) {
			return
		}
	}
}

// interrupt ends a wait in awaitTurn, which then looks at the stream again.
func (s *fairStream) interrupt(closing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = s.closed || closing
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *fairStream) Close() error {
	s.interrupt(true)
	return s.MuxedStream.Close()
}

func (s *fairStream) CloseWrite() error {
	s.interrupt(true)
	return s.MuxedStream.CloseWrite()
}

func (s *fairStream) Reset() error {
	s.interrupt(true)
	return s.MuxedStream.Reset()
}

func (s *fairStream) ResetWithError(code network.StreamErrorCode) error {
	s.interrupt(true)
	return s.MuxedStream.ResetWithError(code)
}

func (s *fairStream) SetDeadline(t time.Time) error {
	s.setWriteDeadline(t)
	return s.MuxedStream.SetDeadline(t)
}

func (s *fairStream) SetWriteDeadline(t time.Time) error {
	s.setWriteDeadline(t)
	return s.MuxedStream.SetWriteDeadline(t)
}

func (s *fairStream) setWriteDeadline(t time.Time) {
	s.mu.Lock()
	s.writeDeadline = t
	s.mu.Unlock()
	s.interrupt(false)
}

// sendBacklog counts the stream data a connection has handed to yamux and
// not yet written to its socket, and lets bulk writers on in FIFO order,
// one frame each, while that is below sendBacklogBound.
type sendBacklog struct {
	mu      sync.Mutex
	bytes   int // may dip below zero: a frame can be written before its Write returns
	waiting []chan struct{}
	closed  bool
}

// wait returns true once the backlog has room for this caller's frame,
// the connection is closed, or deadline (if set) has passed, and false
// (having left the queue) if changed is closed first.
func (q *sendBacklog) wait(deadline time.Time, changed <-chan struct{}) bool {
	q.mu.Lock()
	if q.closed || (q.bytes < sendBacklogBound && len(q.waiting) == 0) {
		q.mu.Unlock()
		return true
	}
	turn := make(chan struct{})
	q.waiting = append(q.waiting, turn)
	q.mu.Unlock()

	var expired <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-turn:
		return true
	case <-expired:
		q.leave(turn)
		return true
	case <-changed:
		q.leave(turn)
		return false
	}
}

// leave takes turn out of the queue, if it is still there.
func (q *sendBacklog) leave(turn chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, w := range q.waiting {
		if w == turn {
			q.waiting = append(q.waiting[:i], q.waiting[i+1:]...)
			return
		}
	}
}

// queued counts n bytes a stream handed to yamux.
func (q *sendBacklog) queued(n int) {
	if n == 0 {
		return
	}
	q.mu.Lock()
	q.bytes += n
	q.mu.Unlock()
}

// written counts n bytes of stream data written to the socket and lets as
// many waiting frames on as there is room for. Once nothing is queued,
// every waiter goes: a writer let on may still wait inside yamux for its
// stream's window, and those behind it must not wait for that too.
func (q *sendBacklog) written(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.bytes -= n
	room := sendBacklogBound - q.bytes
	if q.bytes <= 0 {
		room = len(q.waiting) * fairChunk
	}
	for ; room > 0 && len(q.waiting) > 0; room -= fairChunk {
		close(q.waiting[0])
		q.waiting = q.waiting[1:]
	}
}

// close lets every waiter on and stops all waiting: the connection is gone.
func (q *sendBacklog) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for _, w := range q.waiting {
		close(w)
	}
	q.waiting = nil
}

// frameMeter is the connection under yamux: it reads the yamux frames
// written through it to count the stream data leaving the backlog.
type frameMeter struct {
	net.Conn
	backlog *sendBacklog

	mu      sync.Mutex
	header  [yamuxHeaderSize]byte
	have    int // bytes of header read
	payload int // data bytes of the current frame still to come
}

func (m *frameMeter) Write(b []byte) (int, error) {
	n, err := m.Conn.Write(b)
	if data := m.count(b[:n]); data > 0 {
		m.backlog.written(data)
	}
	return n, err
}

// count walks b, the next bytes of the frame sequence, and returns how
// many of them are stream data.
func (m *frameMeter) count(b []byte) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	data := 0
	for len(b) > 0 {
		if m.payload > 0 {
			k := min(m.payload, len(b))
			m.payload -= k
			data += k
			b = b[k:]
			continue
		}
		k := copy(m.header[m.have:], b)
		m.have += k
		b = b[k:]
		if m.have < yamuxHeaderSize {
			break
		}
		m.have = 0
		if m.header[1] == yamuxTypeData {
			m.payload = int(binary.BigEndian.Uint32(m.header[8:12]))
		}
	}
	return data
}

func (m *frameMeter) Close() error {
	m.backlog.close()
	return m.Conn.Close()
}
