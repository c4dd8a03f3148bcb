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
)

// ErrNotAdmitted means the remote peer and this node did not prove the same
// cluster secret to each other: one of them refused the other's proof.
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
}

// admitState is the admission of one peer. done is closed once it is
// decided; its other fields are guarded by admission.mu.
type admitState struct {
	done    chan struct{}
	ok      bool
	decided bool
	running bool // an outbound handshake is in flight
}

func newAdmission(ctx context.Context, h host.Host, secret []byte, log *slog.Logger, onAdmit func(peer.ID)) *admission {
	return &admission{
		ctx:     ctx,
		host:    h,
		secret:  secret,
		log:     log,
		onAdmit: onAdmit,
		peers:   make(map[peer.ID]*admitState),
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
		go a.initiate(p)
		return
	}
	go a.expect(p)
}

// disconnected forgets a decided admission once the last connection to the
// peer is gone, so a reconnecting peer proves the secret again.
func (a *admission) disconnected(n network.Network, c network.Conn) {
	p := c.RemotePeer()
	if n.Connectedness(p) == network.Connected {
		return
	}
	a.mu.Lock()
	if st, ok := a.peers[p]; ok && st.decided {
		delete(a.peers, p)
	}
	a.mu.Unlock()
}

// expect closes the connections of a peer that dialed us but did not prove
// the secret in time.
func (a *admission) expect(p peer.ID) {
	ctx, cancel := context.WithTimeout(a.ctx, admitTimeout)
	defer cancel()
	err := a.wait(ctx, p)
	if errors.Is(err, context.DeadlineExceeded) && a.ctx.Err() == nil {
		a.reject(p, errors.New("no admission handshake in time"))
	}
}

// initiate runs the dialing side of the handshake.
func (a *admission) initiate(p peer.ID) {
	ctx, cancel := context.WithTimeout(a.ctx, admitTimeout)
	defer cancel()
	err := a.prove(ctx, p)
	a.mu.Lock()
	if st, ok := a.peers[p]; ok {
		st.running = false
	}
	a.mu.Unlock()
	if err != nil {
		if a.ctx.Err() == nil {
			a.reject(p, err)
		}
		return
	}
	a.admit(p)
}

func (a *admission) prove(ctx context.Context, p peer.ID) error {
	s, err := a.host.NewStream(ctx, p, admitProtocol)
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
		return fmt.Errorf("send admission proof: %w", err)
	}
	if err := s.CloseWrite(); err != nil {
		s.Reset()
		return fmt.Errorf("send admission proof: %w", err)
	}
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(s, got); err != nil {
		s.Reset()
		return fmt.Errorf("read admission proof: %w", err)
	}
	if !hmac.Equal(got, a.proof(self, p, roleResponder)) {
		s.Reset()
		return errors.New("wrong admission proof")
	}
	return nil
}

// handle runs the listening side of the handshake. It answers only a valid
// proof, so a peer without the secret learns nothing from us.
func (a *admission) handle(s network.Stream) {
	p := s.Conn().RemotePeer()
	_ = s.SetDeadline(time.Now().Add(admitTimeout))
	self := a.host.ID()
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(s, got); err != nil {
		s.Reset()
		a.reject(p, fmt.Errorf("read admission proof: %w", err))
		return
	}
	if !hmac.Equal(got, a.proof(p, self, roleInitiator)) {
		s.Reset()
		a.reject(p, errors.New("wrong admission proof"))
		return
	}
	if _, err := s.Write(a.proof(p, self, roleResponder)); err != nil {
		s.Reset()
		a.reject(p, fmt.Errorf("send admission proof: %w", err))
		return
	}
	s.Close()
	a.admit(p)
}

// admit records that p proved the secret. onAdmit runs before the waiters
// wake, so that whatever it sets up (the DHT routing table) is in place
// when NewStream returns.
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
		st.ok, st.decided = true, true
		close(st.done)
	}
	a.mu.Unlock()
	if fresh {
		a.log.Debug("peer admitted", "peer", p)
	}
}

// reject records the failure, wakes the waiters and drops the peer's
// connections. An already admitted peer (one that proved the secret on
// another handshake) is kept.
func (a *admission) reject(p peer.ID, reason error) {
	a.mu.Lock()
	st := a.stateLocked(p)
	if st.decided && st.ok {
		a.mu.Unlock()
		return
	}
	if !st.decided {
		st.decided = true
		close(st.done)
	}
	delete(a.peers, p)
	a.mu.Unlock()
	a.log.Warn("peer refused", "peer", p, "err", reason)
	_ = a.host.Network().ClosePeer(p)
}

// wait blocks until p is admitted (nil), refused (ErrNotAdmitted) or ctx ends.
func (a *admission) wait(ctx context.Context, p peer.ID) error {
	a.mu.Lock()
	st := a.stateLocked(p)
	a.mu.Unlock()
	select {
	case <-st.done:
		a.mu.Lock()
		ok := st.ok
		a.mu.Unlock()
		if !ok {
			return ErrNotAdmitted // the caller names p
		}
		return nil
	case <-ctx.Done():
		a.mu.Lock()
		if !st.decided && a.host.Network().Connectedness(p) != network.Connected && a.peers[p] == st {
			delete(a.peers, p) // nobody will decide it; do not keep it forever
		}
		a.mu.Unlock()
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
