package nbd

import (
	"io"
	"net"
	"sync"
)

// replyWriter sends replies on a connection, coalescing those that arrive
// while a send is in progress into the next single writev. With many
// requests in flight (qemu and fio keep 16 or more) this turns one system
// call per reply into one per batch, which is most of the cost of small
// reads. A reply's buffers are on the wire when send returns, so callers may
// reuse them.
type replyWriter struct {
	w io.Writer

	mu      sync.Mutex
	cond    *sync.Cond
	queue   net.Buffers // the batch being gathered
	next    uint64      // number of the batch being gathered
	written uint64      // batches below this number are on the wire
	sending bool
	err     error // sticky: the connection is broken
}

func newReplyWriter(w io.Writer) *replyWriter {
	r := &replyWriter{w: w}
	r.cond = sync.NewCond(&r.mu)
	return r
}

// send queues bufs as one reply and returns once they are written. The
// first sender to find no send in progress writes every reply queued so far.
func (r *replyWriter) send(bufs ...[]byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.queue = append(r.queue, bufs...)
	mine := r.next
	for r.sending && r.written <= mine {
		r.cond.Wait()
	}
	if r.written > mine { // another sender wrote our batch
		return r.err
	}
	batch := r.queue
	r.queue = nil
	r.next++
	r.sending = true
	r.mu.Unlock()
	_, err := batch.WriteTo(r.w)
	r.mu.Lock()
	r.sending = false
	r.written = mine + 1
	if err != nil && r.err == nil {
		r.err = err
	}
	r.cond.Broadcast()
	return r.err
}
