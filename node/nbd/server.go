package nbd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/weft-mesh/weft/internal/accept"
)

// Config configures a Server.
type Config struct {
	// Exports is what the server serves. Required.
	Exports Exports
	// Logger receives connection events at debug level and failures at
	// warn level.
	Logger *slog.Logger
	// TLS, if set, is offered to clients through NBD_OPT_STARTTLS.
	TLS *tls.Config
	// TLSRequired refuses every option but STARTTLS and ABORT before TLS
	// is up (NBD_REP_ERR_TLS_REQD). It needs TLS.
	TLSRequired bool
	// HandshakeTimeout bounds the whole negotiation phase of a connection,
	// TLS handshake included.
	HandshakeTimeout time.Duration
	// MaxConns bounds the connections served at once; more are closed as
	// soon as they are accepted.
	MaxConns int
	// MaxInFlight bounds the requests of one connection being served at
	// once, and MaxInFlightBytes their payload buffers.
	MaxInFlight      int
	MaxInFlightBytes int64
	// Now is the clock used for deadlines and, with an Observer, to time
	// requests.
	Now func() time.Time
	// Observer, if set, is told of every request served; see Observer.
	Observer Observer
}

// DefaultConfig returns a Config without Exports.
func DefaultConfig() Config {
	return Config{
		Logger:           slog.New(slog.DiscardHandler),
		HandshakeTimeout: 30 * time.Second,
		MaxConns:         512,
		MaxInFlight:      64,
		MaxInFlightBytes: 128 << 20,
		Now:              time.Now,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.Exports == nil:
		return errors.New("nbd: config: no exports")
	case c.Logger == nil:
		return errors.New("nbd: config: no logger")
	case c.Now == nil:
		return errors.New("nbd: config: no clock")
	case c.TLSRequired && c.TLS == nil:
		return errors.New("nbd: config: TLS required but no certificate")
	case c.HandshakeTimeout <= 0:
		return fmt.Errorf("nbd: config: handshake timeout %v, want > 0", c.HandshakeTimeout)
	case c.MaxConns < 1 || c.MaxInFlight < 1:
		return fmt.Errorf("nbd: config: max conns %d, max in flight %d, want >= 1", c.MaxConns, c.MaxInFlight)
	case c.MaxInFlightBytes < MaxPayload:
		return fmt.Errorf("nbd: config: max in-flight bytes %d, want >= %d", c.MaxInFlightBytes, MaxPayload)
	}
	return nil
}

// Server serves NBD on any number of listeners. Its methods are safe for
// concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex
	// conns maps each connection to the export it opened, "" while it
	// negotiates.
	conns map[net.Conn]string
	wg    sync.WaitGroup
}

// NewServer returns a server for cfg.
func NewServer(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, log: cfg.Logger, conns: map[net.Conn]string{}}, nil
}

// Conns returns the number of connections being served.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Clients describes the connections in transmission on export, one entry
// per connection: the client's address, or "local" on a unix socket.
func (s *Server) Clients(export string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for c, name := range s.conns {
		if name == export {
			out = append(out, remoteString(c))
		}
	}
	return out
}

// Disconnect closes the connections in transmission on export, as if the
// network had cut them: their requests in flight finish, the rest fail on
// the client's side. It returns how many it closed.
func (s *Server) Disconnect(export string) int {
	return s.DisconnectIf(func(name string, _ netip.Addr) bool { return name == export })
}

// DisconnectIf closes, as Disconnect does, the connections in transmission
// or opening an export for which end(export, client) returns true; client
// is the zero Addr on a unix socket. end runs without the server's lock
// held. It returns how many it closed.
func (s *Server) DisconnectIf(end func(export string, client netip.Addr) bool) int {
	type open struct {
		c      net.Conn
		export string
	}
	s.mu.Lock()
	var conns []open
	for c, name := range s.conns {
		if name != "" {
			conns = append(conns, open{c, name})
		}
	}
	s.mu.Unlock()
	n := 0
	for _, o := range conns {
		if end(o.export, clientAddr(o.c)) {
			o.c.Close()
			n++
		}
	}
	return n
}

// transmitting records that c, if tracked, opens or opened export ("":
// none).
func (s *Server) transmitting(c net.Conn, export string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; ok {
		s.conns[c] = export
	}
}

// Serve accepts connections on ln until ctx is cancelled, then closes ln
// and every connection it accepted, waits for their requests in flight to
// finish and returns nil. It takes ownership of ln. It returns an error if
// accepting fails for another reason, after the same cleanup.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var local sync.WaitGroup
	local.Add(1)
	go func() {
		defer local.Done()
		<-ctx.Done()
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	}()
	err := accept.Loop(ctx, ln, s.log.With("door", "nbd"), func(c net.Conn) {
		if !s.track(c) {
			s.log.Warn("nbd connection refused: too many connections", "remote", c.RemoteAddr().String(), "max", s.cfg.MaxConns)
			c.Close()
			return
		}
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			s.serveConn(ctx, c)
		}()
	})
	if err != nil {
		err = fmt.Errorf("nbd: %w", err)
	}
	cancel()
	local.Wait()
	s.wg.Wait()
	return err
}

// track registers a new connection unless the server is full or
// shutting down.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) >= s.cfg.MaxConns {
		return false
	}
	s.conns[c] = ""
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// clientAddr is the IP address of a TCP client, or the zero Addr for any
// other transport (unix sockets, pipes).
func clientAddr(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// serveConn runs one connection: negotiation, then transmission.
func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	log := s.log.With("remote", remoteString(c))
	client := clientAddr(c)
	c.SetDeadline(s.cfg.Now().Add(s.cfg.HandshakeTimeout))
	n := &negotiation{s: s, raw: c, conn: c, client: client, log: log}
	sess, err := n.run(ctx)
	if err != nil {
		if !errors.Is(err, errAborted) {
			log.Debug("nbd negotiation ended", "err", err)
		}
		return
	}
	defer sess.exp.Close()
	s.transmitting(c, sess.name)
	sess.conn.SetDeadline(time.Time{})
	log = log.With("export", sess.name)
	log.Debug("nbd transmission started", "tls", n.tls, "flags", fmt.Sprintf("%#x", sess.flags))
	t := newTransmission(s, sess, log)
	if err := t.run(ctx); err != nil {
		log.Debug("nbd connection ended", "err", err)
		return
	}
	log.Debug("nbd client disconnected")
}

func remoteString(c net.Conn) string {
	if a := c.RemoteAddr(); a != nil && a.String() != "" {
		return a.String()
	}
	return "local"
}
