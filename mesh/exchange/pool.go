package exchange

import "sync"

// maxIdlePerPeer bounds the idle streams kept per peer. Concurrent calls
// beyond it open streams of their own and close them afterwards.
const maxIdlePerPeer = 4

// streamPool keeps idle streams per peer for reuse. The zero value is
// ready; it is safe for concurrent use.
type streamPool struct {
	mu     sync.Mutex
	idle   map[string][]*conn
	closed bool
}

// take removes and returns the most recently used idle stream to peer, or
// nil.
func (p *streamPool) take(peer string) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.idle[peer]
	if len(s) == 0 {
		return nil
	}
	c := s[len(s)-1]
	s[len(s)-1] = nil
	if len(s) == 1 {
		delete(p.idle, peer)
	} else {
		p.idle[peer] = s[:len(s)-1]
	}
	return c
}

// put keeps c for reuse, or closes it if the pool is full or closed.
func (p *streamPool) put(peer string, c *conn) {
	p.mu.Lock()
	if p.closed || len(p.idle[peer]) >= maxIdlePerPeer {
		p.mu.Unlock()
		c.close()
		return
	}
	if p.idle == nil {
		p.idle = make(map[string][]*conn)
	}
	p.idle[peer] = append(p.idle[peer], c)
	p.mu.Unlock()
}

// close closes every idle stream and makes put close streams from now on.
func (p *streamPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.closed = true
	p.mu.Unlock()
	for _, s := range idle {
		for _, c := range s {
			c.close()
		}
	}
}
