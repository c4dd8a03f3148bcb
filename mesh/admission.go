package mesh

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-yamux/v5"
)

const (
	admitProtocol protocol.ID = "/weft/admit/1.0.0"
	admitLabel                = "weft-admit-v1"
	// admitTimeout bounds the handshake, and how long a weft protocol
	// handler waits for the remote peer's admission before it resets the
	// stream: a peer that just connected is normally admitted within one
	// round trip, one that cannot prove the secret never is.
	admitTimeout = 5 * time.Second
	// The role bytes make the initiator's and the responder's proofs
	// differ, so one side cannot echo the other's proof back.
	roleInitiator byte = 1
	roleResponder byte = 2
	// admitRetryDelay spaces the attempts of a handshake that failed for
	// another reason than a refused proof (a stream reset with its
	// connection, a connection closed mid-handshake).
	admitRetryDelay = 100 * time.Millisecond
	// refusalLinger is how long a refused peer's connections stay open
	// after the refusal (reject).
	refusalLinger = time.Second
	// The refusing side resets the handshake stream, and closes the
	// connections, with these codes: the only signal that tells the other
	// side its proof was refused rather than lost. It tells a peer without
	// the secret nothing it did not learn from the reset before.
	admitRefusedStream network.StreamErrorCode = 0x77656674 // "weft"
	admitRefusedConn   network.ConnErrorCode   = 0x77656674
)

// ErrNotAdmitted means the remote peer and this node did not prove the same
// cluster secret to each other: one of them refused the other's proof.
// Other failures of the handshake (a connection lost mid-way) are reported
// as "admission handshake failed: ..." instead.
var ErrNotAdmitted = errors.New("wrong cluster secret")

// admission runs the secret handshake on every new peer and remembers, per
// connected peer, whether it passed.
type admission struct {
	ctx     context.Context // done when the mesh closes
	host    host.Host       // the raw host: the handshake itself is not gated
	secret  []byte
	log     *slog.Logger
	onAdmit func(peer.ID) // called for each admitted peer; must not block

	mu    sync.Mutex
	peers map[peer.ID]*admitState
	// conns holds each peer's open connections, as the notifications tell
	// them: a decided admission is forgotten when the last one closes. The
	// swarm's own connectedness would race a connection that opens while
	// another one's late disconnect notification runs.
	conns map[peer.ID]map[network.Conn]struct{}
}

// admitState is the admission of one peer. done is closed once it is
// decided; its other fields are guarded by admission.mu.
type admitState struct {
	done    chan struct{}
	err     error // the decision: nil if admitted
	decided bool
	running bool  // an outbound handshake is in flight
	lastErr error // why the running handshake's last attempt failed
}

func newAdmission(ctx context.Context, h host.Host, secret []byte, log *slog.Logger, onAdmit func(peer.ID)) *admission {
	return &admission{
		ctx:     ctx,
		host:    h,
		secret:  secret,
		log:     log,
		onAdmit: onAdmit,
		peers:   make(map[peer.ID]*admitState),
		conns:   make(map[peer.ID]map[network.Conn]struct{}),
	}
}

// start runs admission on every connection, the ones already open included.
func (a *admission) start() {
	a.host.SetStreamHandler(admitProtocol, a.handle)
	n := a.host.Network()
	n.Notify(&network.NotifyBundle{
		ConnectedF:    a.connected,
		DisconnectedF: a.disconnected,
	})
	for _, c := range n.Conns() {
		a.connected(n, c)
	}
}

// proof is what the side playing role sends: a MAC over both peer IDs, in
// initiator-responder order, so it is valid for that pair only.
func (a *admission) proof(initiator, responder peer.ID, role byte) []byte {
	mac := hmac.New(sha256.New, a.secret)
	mac.Write([]byte(admitLabel))
	mac.Write([]byte(initiator))
	mac.Write([]byte(responder))
	mac.Write([]byte{role})
	return mac.Sum(nil)
}

// stateLocked returns p's admission, creating an undecided one.
func (a *admission) stateLocked(p peer.ID) *admitState {
	st, ok := a.peers[p]
	if !ok {
		st = &admitState{done: make(chan struct{})}
		a.peers[p] = st
	}
	return st
}

// connected starts admission of a new peer: the dialing side runs the
// handshake, the listening side gives it admitTimeout to do so. Notifiee
// callbacks must not block, so both run in their own goroutines.
func (a *admission) connected(_ network.Network, c network.Conn) {
	p := c.RemotePeer()
	a.mu.Lock()
	if a.conns[p] == nil {
		a.conns[p] = make(map[network.Conn]struct{})
	}
	a.conns[p][c] = struct{}{}
	if st, ok := a.peers[p]; ok && st.decided && st.err != nil {
		delete(a.peers, p) // a new connection proves the secret again
	}
	st := a.stateLocked(p)
	if st.decided {
		a.mu.Unlock()
		return
	}
	initiate := c.Stat().Direction == network.DirOutbound && !st.running
	if initiate {
		st.running = true
	}
	a.mu.Unlock()
	if initiate {
		go a.initiate(p, st)
		return
	}
	go a.expect(p, st)
}

// disconnected forgets a decided admission once the last connection to the
// peer is gone, so a reconnecting peer proves the secret again.
func (a *admission) disconnected(_ network.Network, c network.Conn) {
	p := c.RemotePeer()
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.conns[p], c)
	if len(a.conns[p]) > 0 {
		return
	}
	delete(a.conns, p)
	if st, ok := a.peers[p]; ok && st.decided && st.err == nil {
		delete(a.peers, p)
	}
}

// expect closes the connections of a peer that dialed us but did not prove
// the secret in time.
func (a *admission) expect(p peer.ID, st *admitState) {
	timer := time.NewTimer(admitTimeout)
	defer timer.Stop()
	select {
	case <-st.done:
	case <-a.ctx.Done():
	case <-timer.C:
		a.reject(p, st, errors.New("no admission handshake in time"))
	}
}

// initiate runs the dialing side of the handshake, again after a failure
// that is no refusal, for as long as the peer stays connected, undecided
// and within admitTimeout: a connection closing under the handshake while
// another one to the same peer stays up is no reason to refuse the peer.
func (a *admission) initiate(p peer.ID, st *admitState) {
	ctx, cancel := context.WithTimeout(a.ctx, admitTimeout)
	defer cancel()
	defer func() {
		a.mu.Lock()
		st.running = false
		a.mu.Unlock()
	}()
	for {
		err := a.prove(ctx, p)
		if err == nil {
			a.admit(p)
			return
		}
		if a.ctx.Err() != nil {
			return
		}
		a.mu.Lock()
		st.lastErr = err
		current := a.peers[p] == st && !st.decided
		connected := len(a.conns[p]) > 0
		a.mu.Unlock()
		if !current {
			return // decided by another handshake, or forgotten
		}
		if errors.Is(err, ErrNotAdmitted) || !connected {
			a.reject(p, st, err)
			return
		}
		a.log.Debug("admission handshake failed, retrying", "peer", p, "err", err)
		select {
		case <-ctx.Done():
			a.reject(p, st, err)
			return
		case <-time.After(admitRetryDelay):
		}
	}
}

// prove runs one attempt of the dialing side. Its error wraps
// ErrNotAdmitted only if a proof was refused: the peer's (wrong) or ours
// (the peer reset the stream or closed the connection with the refusal
// code, which is all a peer without the secret gets to see).
func (a *admission) prove(ctx context.Context, p peer.ID) error {
	// The handshake runs on the connections there are: it is their
	// admission, and a retry must not dial a peer that went away.
	s, err := a.host.NewStream(network.WithNoDial(ctx, "admission"), p, admitProtocol)
	if err != nil {
		return fmt.Errorf("open admission stream: %w", err)
	}
	defer s.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(deadline)
	}
	self := a.host.ID()
	if _, err := s.Write(a.proof(self, p, roleInitiator)); err != nil {
		s.Reset()
		return refusedOr(fmt.Errorf("send admission proof: %w", err))
	}
	if err := s.CloseWrite(); err != nil {
		s.Reset()
		return refusedOr(fmt.Errorf("send admission proof: %w", err))
	}
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(s, got); err != nil {
		s.Reset()
		return refusedOr(fmt.Errorf("read admission proof: %w", err))
	}
	if !hmac.Equal(got, a.proof(self, p, roleResponder)) {
		_ = s.ResetWithError(admitRefusedStream)
		return fmt.Errorf("%w: the peer's admission proof does not match", ErrNotAdmitted)
	}
	return nil
}

// refusedOr returns err marked as ErrNotAdmitted if the remote side sent
// the refusal code, and err itself otherwise. libp2p's yamux stream turns
// a GoAway into a ConnError on Read and Write but not on CloseWrite, which
// returns yamux's own error: both are matched.
func refusedOr(err error) error {
	var se *network.StreamError
	var ce *network.ConnError
	var ge *yamux.GoAwayError
	if (errors.As(err, &se) && se.Remote && se.ErrorCode == admitRefusedStream) ||
		(errors.As(err, &ce) && ce.Remote && ce.ErrorCode == admitRefusedConn) ||
		(errors.As(err, &ge) && ge.Remote && network.ConnErrorCode(ge.ErrorCode) == admitRefusedConn) {
		return fmt.Errorf("%w: the peer refused our admission proof (%v)", ErrNotAdmitted, err)
	}
	return err
}

// handle runs the listening side of the handshake. It answers only a valid
// proof, so a peer without the secret learns nothing from us. A stream
// that fails before a proof arrived decides nothing: the dialing side
// tries again, and expect bounds how long it may.
func (a *admission) handle(s network.Stream) {
	p := s.Conn().RemotePeer()
	_ = s.SetDeadline(time.Now().Add(admitTimeout))
	self := a.host.ID()
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(s, got); err != nil {
		s.Reset()
		a.log.Debug("admission handshake failed", "peer", p, "err", fmt.Errorf("read admission proof: %w", err))
		return
	}
	if !hmac.Equal(got, a.proof(p, self, roleInitiator)) {
		_ = s.ResetWithError(admitRefusedStream)
		a.mu.Lock()
		st := a.stateLocked(p)
		a.mu.Unlock()
		a.reject(p, st, fmt.Errorf("%w: the peer's admission proof does not match", ErrNotAdmitted))
		return
	}
	// The peer proved the secret: it is admitted whether or not our answer
	// reaches it (if not, it asks again).
	a.admit(p)
	if _, err := s.Write(a.proof(p, self, roleResponder)); err != nil {
		s.Reset()
		a.log.Debug("admission handshake failed", "peer", p, "err", fmt.Errorf("send admission proof: %w", err))
		return
	}
	s.Close()
}

// admit records that p proved the secret. onAdmit runs before the waiters
// wake, so that whatever it sets up (the DHT routing table) is in place
// when Open returns.
func (a *admission) admit(p peer.ID) {
	a.mu.Lock()
	decided := a.stateLocked(p).decided
	a.mu.Unlock()
	if decided {
		return
	}
	a.onAdmit(p)
	a.mu.Lock()
	st := a.stateLocked(p)
	fresh := !st.decided
	if fresh {
		st.err, st.decided = nil, true
		close(st.done)
	}
	a.mu.Unlock()
	if fresh {
		a.log.Debug("peer admitted", "peer", p)
	}
}

// reject decides st, p's admission that a handshake started on, as failed
// for reason, wakes the waiters and drops the peer's connections, with the
// refusal code if a proof was refused. An admission decided meanwhile, or
// replaced by that of a newer connection, is left as it is. The decision
// stays for admitTimeout, so that a Join or Open that connected just
// before gets the reason instead of waiting for a decision that never
// comes; a new connection replaces it with a new handshake.
func (a *admission) reject(p peer.ID, st *admitState, reason error) {
	a.mu.Lock()
	if a.peers[p] != st || st.decided {
		a.mu.Unlock()
		return
	}
	st.err, st.decided = reason, true
	close(st.done)
	a.mu.Unlock()
	time.AfterFunc(admitTimeout, func() {
		a.mu.Lock()
		if a.peers[p] == st {
			delete(a.peers, p)
		}
		a.mu.Unlock()
	})
	refused := errors.Is(reason, ErrNotAdmitted)
	if refused {
		a.log.Warn("peer refused", "peer", p, "err", reason)
	} else {
		a.log.Warn("admission handshake failed", "peer", p, "err", reason)
	}
	conns := a.host.Network().ConnsToPeer(p)
	if !refused {
		for _, c := range conns {
			_ = c.Close()
		}
		return
	}
	// A refusal closes the connections refusalLinger after the stream
	// reset that carries it, not at once: closed with the peer's last
	// frames (its proof's end, window updates) unread here, a TCP
	// connection answers with a reset, and the peer's kernel throws away
	// what it had not read yet, the stream's refusal code and the GoAway
	// among it, so the peer saw "connection reset by peer" and not that it
	// was refused (1 in 300 handshakes under load). By then both sides
	// have read all there was, and the close is an orderly one.
	time.AfterFunc(refusalLinger, func() {
		for _, c := range conns {
			_ = c.CloseWithError(admitRefusedConn)
		}
	})
}

// wait blocks until p is admitted (nil), refused (ErrNotAdmitted), its
// handshake failed otherwise, or ctx ends.
func (a *admission) wait(ctx context.Context, p peer.ID) error {
	a.mu.Lock()
	st := a.stateLocked(p)
	a.mu.Unlock()
	select {
	case <-st.done:
		a.mu.Lock()
		err := st.err
		a.mu.Unlock()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrNotAdmitted):
			return ErrNotAdmitted // the caller names p
		default:
			return fmt.Errorf("admission handshake failed: %w", err)
		}
	case <-ctx.Done():
		a.mu.Lock()
		lastErr := st.lastErr
		if !st.decided && len(a.conns[p]) == 0 && a.peers[p] == st {
			delete(a.peers, p) // nobody will decide it; do not keep it forever
		}
		a.mu.Unlock()
		if lastErr != nil {
			return fmt.Errorf("admission handshake failed: %v: %w", lastErr, ctx.Err())
		}
		return ctx.Err()
	}
}

// gate wraps a stream handler so that it runs only for admitted peers and
// resets the streams of everyone else.
func (a *admission) gate(h network.StreamHandler) network.StreamHandler {
	return func(s network.Stream) {
		ctx, cancel := context.WithTimeout(a.ctx, admitTimeout)
		err := a.wait(ctx, s.Conn().RemotePeer())
		cancel()
		if err != nil {
			s.Reset()
			return
		}
		h(s)
	}
}
