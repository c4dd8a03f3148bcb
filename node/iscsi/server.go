package iscsi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/weft-mesh/weft/internal/accept"
	"github.com/weft-mesh/weft/node/scsi"
)

// Errors a Targets implementation returns (wrapped) to refuse a login.
var (
	// ErrNotFound: no such target (status 0x0203).
	ErrNotFound = errors.New("iscsi: target not found")
	// ErrNotAllowed: the initiator may not use the target (0x0202).
	ErrNotAllowed = errors.New("iscsi: initiator not allowed")
)

// Disk is what a target's LUN 0 serves.
type Disk interface {
	scsi.Backend
	Close() error
}

// Targets is the server's view of the targets it serves. Its methods are
// called concurrently.
type Targets interface {
	// List returns the names of the targets an initiator at client may
	// discover.
	List(ctx context.Context, initiator string, client netip.Addr) ([]string, error)
	// Access returns the CHAP secrets an initiator must prove to log in to
	// target (the zero CHAP when none); ErrNotFound or ErrNotAllowed
	// refuse the login.
	Access(ctx context.Context, target, initiator string, client netip.Addr) (CHAP, error)
	// Open opens the target's LUN 0 for a session that logged in.
	Open(ctx context.Context, target, initiator string, client netip.Addr) (Disk, error)
}

// Observer counts what the server does (Prometheus metrics). Its methods
// are called on the path of every command: they must be fast.
type Observer interface {
	// Login reports a login's outcome: "ok", "auth" (CHAP failed),
	// "authz" (not allowed), "not_found" or "error".
	Login(result string)
	// Command reports a SCSI command: op is "read", "write" or "other",
	// bytes the data moved, ok false for a CHECK CONDITION.
	Command(op string, bytes int, d time.Duration, ok bool)
	// Buffer reports a change of the command data the server holds:
	// bytes taken (positive) or given back (negative). Their sum is the
	// data held, never more than Config.ServerBufferBytes.
	Buffer(delta int64)
}

// Config configures a Server.
type Config struct {
	Targets  Targets
	Logger   *slog.Logger
	Observer Observer // nil: none
	// PortalGroupTag is the TargetPortalGroupTag of the portal.
	PortalGroupTag uint16
	// MaxRecvDataSegmentLength is the largest data segment the target
	// accepts in one PDU.
	MaxRecvDataSegmentLength int
	// MaxBurstLength and FirstBurstLength are the target's offers (the
	// negotiated values are the minimum of both sides').
	MaxBurstLength, FirstBurstLength int
	// QueueDepth bounds the commands a session runs at once (its CmdSN
	// window).
	QueueDepth int
	// BufferBytes bounds the command data a connection holds at once,
	// ServerBufferBytes what all connections hold together. Both are
	// at least maxCommandData (smaller values are raised), so that any
	// command the target accepts fits; BufferBytes is at most
	// ServerBufferBytes. A command beyond a budget waits for it (see
	// budget.go).
	BufferBytes, ServerBufferBytes int64
	// MaxSessions bounds the sessions of the server, MaxClientSessions
	// those of one client address, so that one client cannot take all
	// of the server's.
	MaxSessions, MaxClientSessions int
	// LoginTimeout bounds a whole login; IdleTimeout is how long a
	// session may be silent before the target pings it (NOP-In), and
	// again before it gives up on it; WriteTimeout bounds one PDU sent;
	// DataOutTimeout bounds the wait for all of a write's data, from its
	// command to its last Data-Out, however steadily it trickles in.
	// Zero or less: the default.
	LoginTimeout, IdleTimeout, WriteTimeout, DataOutTimeout time.Duration
}

// DefaultMaxClientSessions is the sessions one client address may have
// at once: a host rarely needs more than a few per target, and a client
// at the cap is refused (status 0x0206) rather than let fill the server.
const DefaultMaxClientSessions = 16

// The default timeouts, each bounding what a silent or slow initiator
// holds: a connection and its buffers while it logs in, a session while
// it says nothing, the server's writer while it reads nothing, and a
// write's share of the data budget (up to 32 MiB) while its data comes.
const (
	DefaultLoginTimeout = 15 * time.Second
	DefaultIdleTimeout  = 30 * time.Second
	DefaultWriteTimeout = 30 * time.Second
	// DefaultDataOutTimeout lets the largest write (32 MiB) arrive at
	// 0.6 MB/s: far below any link an iSCSI disk is used over.
	DefaultDataOutTimeout = 60 * time.Second
)

// DefaultConfig returns the limits the daemon uses; set Targets.
func DefaultConfig() Config {
	return Config{
		Logger:                   slog.Default(),
		PortalGroupTag:           1,
		MaxRecvDataSegmentLength: 256 << 10,
		MaxBurstLength:           scsi.MaxTransferBlocks * scsi.LogicalBlockSize,
		FirstBurstLength:         256 << 10,
		QueueDepth:               64,
		BufferBytes:              64 << 20,
		ServerBufferBytes:        256 << 20,
		MaxSessions:              256,
		MaxClientSessions:        DefaultMaxClientSessions,
		LoginTimeout:             DefaultLoginTimeout,
		IdleTimeout:              DefaultIdleTimeout,
		WriteTimeout:             DefaultWriteTimeout,
		DataOutTimeout:           DefaultDataOutTimeout,
	}
}

// maxCommandData bounds the data of one command: the largest transfer
// the SCSI layer accepts, plus room for parameter lists (UNMAP).
const maxCommandData = scsi.MaxTransferBlocks*scsi.LogicalBlockSize + 64<<10

// Server serves iSCSI on listeners.
type Server struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	sessions map[*conn]struct{}
	nextTSIH uint16
	conns    atomic.Int64 // connections being served, logged in or not
	// rules counts DisconnectIf calls: a login that spans one is refused.
	rules atomic.Uint64
	// budget is the server's share of command data (budget.go).
	budget *semaphore.Weighted

	// atomicity holds a target's COMPARE AND WRITE lock, shared by its
	// sessions (see scsi.LUInfo.Atomicity); one small lock per target
	// name ever logged in to.
	atomicity map[string]*sync.Mutex
}

// atomicityOf returns the COMPARE AND WRITE lock of target.
func (s *Server) atomicityOf(target string) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.atomicity == nil {
		s.atomicity = map[string]*sync.Mutex{}
	}
	m, ok := s.atomicity[target]
	if !ok {
		m = new(sync.Mutex)
		s.atomicity[target] = m
	}
	return m
}

// SessionInfo describes a logged-in session.
type SessionInfo struct {
	Target, Initiator string
	Client            netip.Addr
	Discovery         bool
}

// NewServer checks cfg and returns a server.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Targets == nil {
		return nil, errors.New("iscsi: no targets")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := DefaultConfig()
	if cfg.MaxRecvDataSegmentLength < 512 || cfg.MaxRecvDataSegmentLength > 1<<24-1 {
		cfg.MaxRecvDataSegmentLength = d.MaxRecvDataSegmentLength
	}
	if cfg.MaxBurstLength < 512 || cfg.MaxBurstLength > maxCommandData {
		cfg.MaxBurstLength = d.MaxBurstLength
	}
	if cfg.FirstBurstLength < 512 || cfg.FirstBurstLength > cfg.MaxBurstLength {
		cfg.FirstBurstLength = min(d.FirstBurstLength, cfg.MaxBurstLength)
	}
	if cfg.QueueDepth < 1 {
		cfg.QueueDepth = d.QueueDepth
	}
	if cfg.BufferBytes < maxCommandData {
		cfg.BufferBytes = max(d.BufferBytes, maxCommandData)
	}
	if cfg.ServerBufferBytes < maxCommandData {
		cfg.ServerBufferBytes = max(d.ServerBufferBytes, maxCommandData)
	}
	cfg.BufferBytes = min(cfg.BufferBytes, cfg.ServerBufferBytes)
	if cfg.MaxSessions < 1 {
		cfg.MaxSessions = d.MaxSessions
	}
	if cfg.MaxClientSessions < 1 {
		cfg.MaxClientSessions = d.MaxClientSessions
	}
	// Each timeout falls back to its own default (they all used to fall
	// back to the login's 15 s).
	for _, t := range []struct{ set, def *time.Duration }{
		{&cfg.LoginTimeout, &d.LoginTimeout}, {&cfg.IdleTimeout, &d.IdleTimeout},
		{&cfg.WriteTimeout, &d.WriteTimeout}, {&cfg.DataOutTimeout, &d.DataOutTimeout},
	} {
		if *t.set <= 0 {
			*t.set = *t.def
		}
	}
	return &Server{cfg: cfg, log: cfg.Logger, sessions: map[*conn]struct{}{}, budget: semaphore.NewWeighted(cfg.ServerBufferBytes)}, nil
}

// Serve accepts connections on ln until ctx ends, then closes them and
// waits for their commands.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	err := accept.Loop(ctx, ln, s.log.With("door", "iscsi"), func(nc net.Conn) {
		// Connections still logging in hold buffers and a goroutine for
		// up to LoginTimeout before they count as sessions: bound them
		// all, at twice the sessions allowed.
		if n := s.conns.Add(1); n > int64(2*s.cfg.MaxSessions) {
			s.conns.Add(-1)
			s.log.Warn("iscsi connection refused: too many connections", "remote", nc.RemoteAddr().String(), "max", 2*s.cfg.MaxSessions)
			nc.Close()
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.conns.Add(-1)
			s.serveConn(ctx, nc)
		}()
	})
	if err != nil {
		return fmt.Errorf("iscsi: %w", err)
	}
	return nil
}

// Sessions lists the logged-in sessions.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SessionInfo, 0, len(s.sessions))
	for c := range s.sessions {
		out = append(out, c.info())
	}
	return out
}

// info describes the session of c.
func (c *conn) info() SessionInfo {
	return SessionInfo{Target: c.target, Initiator: c.initiator, Client: c.client, Discovery: c.discovery}
}

func (s *Server) observeLogin(result string) {
	if s.cfg.Observer != nil {
		s.cfg.Observer.Login(result)
	}
}

// register adds a session that finished its login, and gives it its
// TSIH. An older session of the same initiator session ID to the same
// target is reinstated (RFC 7143 section 6.3.5): it is closed, and
// register returns only once its commands have finished or been aborted
// and its connection is closed, so that none of them lands after the new
// session's login is answered. It refuses the login, with its status,
// when the old session does not end within the login timeout, or when the
// server or the client has all the sessions it may.
func (s *Server) register(c *conn) error {
	for {
		s.mu.Lock()
		var olds []*conn
		for old := range s.sessions {
			if old.initiator == c.initiator && old.isid == c.isid && old.target == c.target {
				olds = append(olds, old)
			}
		}
		if len(olds) == 0 {
			err := s.addLocked(c)
			s.mu.Unlock()
			return err
		}
		s.mu.Unlock()
		if err := c.awaitEnd(olds); err != nil {
			return err
		}
	}
}

// awaitEnd closes the sessions a login reinstates and waits for them to
// end: their commands done and their connections closed.
func (c *conn) awaitEnd(olds []*conn) error {
	timeout := time.NewTimer(c.srv.cfg.LoginTimeout)
	defer timeout.Stop()
	for _, old := range olds {
		old.log.Info("iscsi session reinstated by a new login: closing it, waiting for its commands")
		old.close()
		select {
		case <-old.ended:
		case <-timeout.C:
			return refuse(statusOutOfResources, "the session it reinstates did not end within %v", c.srv.cfg.LoginTimeout)
		case <-c.ctx.Done():
			return c.ctx.Err()
		}
	}
	return nil
}

// addLocked adds c to the sessions unless the server or c's client is at
// its cap. Call with s.mu held.
func (s *Server) addLocked(c *conn) error {
	if len(s.sessions) >= s.cfg.MaxSessions {
		return refuse(statusOutOfResources, "%d sessions, the limit", len(s.sessions))
	}
	mine := 0
	for other := range s.sessions {
		if other.client == c.client {
			mine++
		}
	}
	if mine >= s.cfg.MaxClientSessions {
		return refuse(statusTooManyConns, "client %s has %d sessions, the limit per client", c.client, mine)
	}
	s.nextTSIH++
	if s.nextTSIH == 0 {
		s.nextTSIH = 1
	}
	c.tsih = s.nextTSIH // written under s.mu, which hasSession reads it under
	s.sessions[c] = struct{}{}
	return nil
}

// hasSession reports whether a session has the TSIH.
func (s *Server) hasSession(tsih uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.sessions {
		if c.tsih == tsih {
			return true
		}
	}
	return false
}

func (s *Server) unregister(c *conn) {
	s.mu.Lock()
	delete(s.sessions, c)
	s.mu.Unlock()
}

func (s *Server) serveConn(ctx context.Context, nc net.Conn) {
	client := netip.Addr{}
	if ap, err := netip.ParseAddrPort(nc.RemoteAddr().String()); err == nil {
		client = ap.Addr().Unmap()
	}
	c := newConn(ctx, s, nc, client)
	defer close(c.ended)
	// A login may register its session and still fail (its target will
	// not open): unregister whatever happens, once the session's
	// commands are done and its disk closed (disk rm asks Sessions who
	// still uses a disk).
	defer s.unregister(c)
	defer c.release()
	if !c.login() {
		return
	}
	c.serve()
}

// Disconnect ends the sessions logged in to target and returns how many
// it ended.
func (s *Server) Disconnect(target string) int {
	return s.DisconnectIf(func(ses SessionInfo) bool { return ses.Target == target })
}

// DisconnectIf ends the sessions (discovery ones included) for which end
// returns true, as if the network had cut them, and returns how many it
// ended. end runs without the server's lock held: it may take its time to
// decide (a disk's rules). A login under way when it is called, which
// checked the rules before end could, fails with status 0x0301 (service
// unavailable: log in again) instead of becoming a session.
func (s *Server) DisconnectIf(end func(SessionInfo) bool) int {
	// Logins under way checked rules older than the caller's: they are
	// refused at their end (conn.loginRules), to be tried again.
	s.rules.Add(1)
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.sessions))
	for c := range s.sessions {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	n := 0
	for _, c := range conns {
		if end(c.info()) {
			c.close()
			n++
		}
	}
	return n
}
