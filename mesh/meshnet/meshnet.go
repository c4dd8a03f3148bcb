// Package meshnet is the contract between the cluster layer and the
// network it runs over: a member's identity, the membership view, streams
// per protocol, gossip broadcast and state push-pull. The libp2p mesh
// (package mesh) and the in-memory network (package memnet) both satisfy
// it, so the same node code runs over real sockets and, in tests and
// simulations, many nodes in one process. It imports nothing of libp2p.
package meshnet

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ipfs/go-cid"
	"github.com/mr-tron/base58"
	"github.com/multiformats/go-multihash"
)

// PeerID is a member's identity: the raw bytes of its libp2p peer ID (a
// multihash of its public key). Its one text form is base58btc (String),
// used by the catalog, the API and logs; packages that only need a name
// (placement, heal, exchange, datapath) take string(id) as opaque.
type PeerID string

// String returns the base58btc form ("12D3KooW…").
func (p PeerID) String() string { return base58.Encode([]byte(p)) }

// ParsePeerID parses the base58btc form and checks that it is a multihash.
func ParsePeerID(s string) (PeerID, error) {
	if s == "" {
		return "", errors.New("peer id: empty")
	}
	b, err := base58.Decode(s)
	if err != nil {
		return "", fmt.Errorf("peer id %q: %w", s, err)
	}
	if _, err := multihash.Cast(b); err != nil {
		return "", fmt.Errorf("peer id %q: not a multihash: %w", s, err)
	}
	return PeerID(b), nil
}

// TestID returns a valid peer ID derived from name (an identity multihash
// of it), for in-memory networks and tests: it parses, prints and sorts
// like a real one.
func TestID(name string) PeerID {
	h, err := multihash.Sum([]byte(name), multihash.IDENTITY, -1)
	if err != nil {
		panic(fmt.Sprintf("meshnet: test id %q: %v", name, err))
	}
	return PeerID(h)
}

// State is a member's liveness as seen by this node.
type State string

// A member is alive until it is declared dead or leaves.
const (
	StateAlive State = "alive"
	StateDead  State = "dead" // failed without leaving
	StateLeft  State = "left" // left gracefully
)

// Member is one node of the cluster as seen by this node.
type Member struct {
	ID    PeerID
	Site  string
	State State
	// Addrs are the member's listen addresses in the network's own text
	// form (multiaddrs without /p2p for libp2p); may be empty.
	Addrs      []string
	Used, Free int64
	Self       bool
}

// Protocol names a stream protocol, e.g. "/weft/catalog/1.0.0".
type Protocol string

// Handler serves one incoming stream from peer from. ctx ends when the
// network closes; the network closes s when the handler returns.
type Handler func(ctx context.Context, from PeerID, s io.ReadWriteCloser)

// StateDelegate receives the application state that rides on gossip:
// full-state push-pull and broadcasts. Its methods are called from the
// network's goroutines and must not block.
type StateDelegate interface {
	// LocalState returns the full local state sent to a peer on push-pull.
	LocalState() []byte
	// MergeRemoteState merges a peer's full state received on push-pull.
	MergeRemoteState(buf []byte)
	// NotifyMsg delivers a broadcast queued by Broadcast on some member.
	// buf belongs to the callee.
	NotifyMsg(buf []byte)
}

// Errors a Network returns, matched with errors.Is.
var (
	// ErrUnreachable: the peer cannot be reached (down, cut off, unknown).
	ErrUnreachable = errors.New("peer unreachable")
	// ErrUnsupported: the peer does not serve the protocol.
	ErrUnsupported = errors.New("protocol not supported by peer")
	// ErrClosed: this network endpoint is closed.
	ErrClosed = errors.New("network closed")
)

// Network is what the cluster layer asks of the network. All methods are
// safe for concurrent use.
type Network interface {
	// Self is this node's identity.
	Self() PeerID
	// Open opens a stream to peer to speaking p. Close ends it
	// gracefully (the peer reads what was sent, then end of stream) and
	// makes the peer's writes fail from then on, so that no writer waits
	// forever on a reader that is gone; Abort breaks it. Cancelling ctx
	// aborts the open only.
	Open(ctx context.Context, to PeerID, p Protocol) (io.ReadWriteCloser, error)
	// Handle serves p: h runs in its own goroutine for every incoming
	// stream. Register handlers before Join.
	Handle(p Protocol, h Handler)
	// Members returns every known member, self included, sorted by ID.
	Members() []Member
	// OnMembershipChange registers fn, called (asynchronously, coalesced,
	// from one goroutine, no lock held) after the membership changed.
	OnMembershipChange(fn func())
	// Broadcast sends msg, best effort, to every member's
	// StateDelegate.NotifyMsg.
	Broadcast(msg []byte)
	// Join contacts the members at addrs and returns how many answered.
	Join(ctx context.Context, addrs []string) (int, error)
	// Close leaves the network and releases its resources.
	Close() error
}

// Resetter is a stream that can be broken: the peer's reads and writes
// fail instead of seeing a clean end of stream.
type Resetter interface {
	Reset() error
}

// Abort breaks s if it can (Resetter), else closes it. Use it to cancel an
// exchange so that the peer does not mistake the cancel for a finished one.
func Abort(s io.ReadWriteCloser) error {
	if r, ok := s.(Resetter); ok {
		return r.Reset()
	}
	return s.Close()
}

// Learner is a Network that can be told a member's address in advance
// ("ADDR/p2p/ID"), so that Open reaches a peer gossip has not named yet.
type Learner interface {
	Learn(addr string) (PeerID, error)
}

// Provider is a Network that can announce that it holds a root (a DHT).
type Provider interface {
	Provide(ctx context.Context, root cid.Cid) error
}

// Dialer adapts a Network and a Protocol to the block exchange's dialer
// (streams to peers named by string(PeerID)).
type Dialer struct {
	Net   Network
	Proto Protocol
}

// OpenStream opens a stream to peer (string(PeerID)) speaking d.Proto.
func (d Dialer) OpenStream(ctx context.Context, peer string) (io.ReadWriteCloser, error) {
	return d.Net.Open(ctx, PeerID(peer), d.Proto)
}
