package iscsi

import "context"

// The command data a task holds (a write's data-out, a read's data-in)
// is bounded twice: by its connection's budget (Config.BufferBytes) and
// by the server's (Config.ServerBufferBytes), which all connections
// share, so that many sessions cannot hold many times a connection's
// budget. A task takes its connection's share first and the server's
// second, and gives both back together in drop.
//
// Waiting for the server's share never deadlocks: a reader waits only
// when its connection has no write collecting data-out (otherwise it
// answers BUSY, as for the connection's budget), so every byte of the
// server's budget is held by a command that finishes without a blocked
// reader: one running, or one collecting data on a reader that is free.

// reserve takes n bytes from the connection's budget, then from the
// server's, waiting for both until ctx ends.
func (c *conn) reserve(ctx context.Context, n int64) error {
	if err := c.budget.Acquire(ctx, n); err != nil {
		return err
	}
	if err := c.srv.budget.Acquire(ctx, n); err != nil {
		c.budget.Release(n)
		return err
	}
	c.srv.observeBuffer(n)
	return nil
}

// tryReserve takes n bytes from both budgets if both have them at once.
func (c *conn) tryReserve(n int64) bool {
	if !c.budget.TryAcquire(n) {
		return false
	}
	if !c.srv.budget.TryAcquire(n) {
		c.budget.Release(n)
		return false
	}
	c.srv.observeBuffer(n)
	return true
}

// unreserve gives n bytes back to both budgets.
func (c *conn) unreserve(n int64) {
	c.srv.observeBuffer(-n)
	c.srv.budget.Release(n)
	c.budget.Release(n)
}

func (s *Server) observeBuffer(delta int64) {
	if s.cfg.Observer != nil {
		s.cfg.Observer.Buffer(delta)
	}
}
