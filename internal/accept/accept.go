// Package accept is the accept loop of weft's door servers (NBD, iSCSI):
// it hands each connection to the server, and outlives the errors a
// listener recovers from (out of file descriptors, a timeout) instead of
// closing the door until a restart, and gives a client on this host a
// send buffer sized for it.
package accept

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"time"
)

// Backoff bounds the wait after a temporary accept error: it starts at
// MinBackoff and doubles up to MaxBackoff while errors repeat, so that a
// process out of file descriptors neither spins nor stays deaf long once
// some are closed.
const (
	MinBackoff = 5 * time.Millisecond
	MaxBackoff = time.Second
)

// Loop accepts connections on ln until ctx ends, sizes the send buffer of
// each (sizeSendBuffer), and calls handle with it on the accepting
// goroutine (handle must not block: it starts the connection's goroutine
// or closes it). Loop closes ln when ctx ends and then returns nil. A
// temporary error (Temporary) is logged and retried after a backoff; any
// other error ends the loop and is returned, wrapped with the listener's
// address.
func Loop(ctx context.Context, ln net.Listener, log *slog.Logger, handle func(net.Conn)) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	backoff := MinBackoff
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !Temporary(err) {
				return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
			}
			log.Warn("accept failed, retrying", "err", err, "backoff", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			backoff = min(2*backoff, MaxBackoff)
			continue
		}
		backoff = MinBackoff
		if err := sizeSendBuffer(nc); err != nil {
			log.Debug("cannot size a connection's send buffer", "err", err)
		}
		handle(nc)
	}
}

// Temporary reports whether an accept error passes: a timeout, or the
// process or system out of file descriptors (EMFILE, ENFILE) or buffers
// for a moment (ENOBUFS, ENOMEM), or a connection reset before it was
// accepted (ECONNABORTED).
func Temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
