package datapath

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
)

// Limits and defaults of a Spec.
const (
	// DefaultBlockSize is the bytes asked per Get request when Spec.BlockSize is 0.
	DefaultBlockSize = 4 << 20
	// MinBlockSize and MaxBlockSize bound Spec.BlockSize.
	MinBlockSize = 64 << 10
	MaxBlockSize = 16 << 20
	// DefaultConcurrency is the requests in flight when Spec.Concurrency is 0.
	DefaultConcurrency = 4
	// MaxConcurrency bounds Spec.Concurrency.
	MaxConcurrency = 256
	// DefaultDiskBlockSize is weft's default disk block size, used to size
	// batches and estimate bytes when Spec.DiskBlockSize is 0.
	DefaultDiskBlockSize = 64 << 10
	// DefaultPatience, DefaultSlowAfter, DefaultHedgeAfter,
	// DefaultPeerBackoff and DefaultLagFactor: the defaults of
	// Thresholds; a member request times out after 3 × Patience by
	// default.
	DefaultPatience    = 3 * time.Second
	DefaultSlowAfter   = time.Second
	DefaultHedgeAfter  = 3 * time.Second
	DefaultPeerBackoff = 2 * time.Second
	DefaultLagFactor   = 2
)

// Thresholds holds the thresholds by which a transfer judges its peers,
// in wall-clock time or in how far their shares came: each is a guess
// about links and machines, and the defaults suit real links. The zero
// value of every field means its default. Tests of the decisions set them
// far from what a loaded machine's scheduling delays could reach, so that
// each test decides on the property it is about.
type Thresholds struct {
	// Patience is how long a swarm or crowd member may go without
	// sending this receiver a block of its share before the receiver,
	// once idle, takes that share from the origin itself (default
	// DefaultPatience): a member alive but not receiving must not stall
	// the others.
	Patience time.Duration
	// SlowAfter is how long a swarm member may go without sending this
	// receiver a block of its share before the other members, once they
	// have sent theirs, are asked for that share too (default
	// DefaultSlowAfter).
	SlowAfter time.Duration
	// HedgeAfter is how long a request to a swarm or crowd member may
	// bring less than 16 KiB before its blocks, and the rest of that
	// member's share, are asked of the others too (asks.stallNoticed;
	// default DefaultHedgeAfter). A flow on a full link stalls for a
	// second or two now and then (retransmission backoff behind a queue
	// that drops) and goes on: on a site whose own download is the
	// bottleneck every flow does, and hedged after 1 s, bench-swarm.sh
	// unequal8's quarter-rate site asked most of its blocks twice over
	// its slow link and took 72-83 s for a 42.9 s bound (45.4-46.3 s
	// without hedging, or hedged after 3 s).
	HedgeAfter time.Duration
	// MemberRequest is the stall window of a request to a swarm or crowd
	// member (default 3 × Patience): the request fails once that long
	// passes with less than 16 KiB of its answer arriving, as one that
	// takes a request and sends nothing would otherwise keep its blocks
	// in flight, asked of nobody else, for ever. An answer that keeps
	// coming is never cut short, however long it takes. A member whose
	// answer stalls counts as failed.
	MemberRequest time.Duration
	// PeerBackoff is how long a peer that failed a request is passed
	// over (default DefaultPeerBackoff): not asked which blocks it holds,
	// so that a dead receiver does not cost a failed request per batch,
	// and not counted alive in a swarm or crowd. It is still tried when
	// nobody else has a batch.
	PeerBackoff time.Duration
	// LagFactor: a swarm or crowd member's share lags when the other
	// shares came here LagFactor times as far, as fractions of each share
	// (default DefaultLagFactor; see markLagging). The others then adopt
	// the end of its share rather than wait for it.
	LagFactor float64
}

func (t Thresholds) withDefaults() Thresholds {
	if t.Patience == 0 {
		t.Patience = DefaultPatience
	}
	if t.SlowAfter == 0 {
		t.SlowAfter = DefaultSlowAfter
	}
	if t.HedgeAfter == 0 {
		t.HedgeAfter = DefaultHedgeAfter
	}
	if t.MemberRequest == 0 {
		t.MemberRequest = 3 * t.Patience
	}
	if t.PeerBackoff == 0 {
		t.PeerBackoff = DefaultPeerBackoff
	}
	if t.LagFactor == 0 {
		t.LagFactor = DefaultLagFactor
	}
	return t
}

func (t Thresholds) check() error {
	if t.Patience < 0 || t.SlowAfter < 0 || t.HedgeAfter < 0 || t.MemberRequest < 0 || t.PeerBackoff < 0 {
		return fmt.Errorf("negative duration in thresholds %+v", t)
	}
	if !(t.LagFactor >= 1) || math.IsInf(t.LagFactor, 0) {
		return fmt.Errorf("lag factor %v not at least 1", t.LagFactor)
	}
	return nil
}

// Spec describes one transfer. The zero value of every knob means its
// default.
type Spec struct {
	// ID names the transfer; the caller chooses it. It also sets where in
	// the missing blocks the transfer starts, so that receivers of the
	// same root start at different places and can serve each other.
	ID string
	// Root is the block-map root to make complete locally.
	Root cid.Cid
	// Sources are the peers that may hold the blocks: the origin first,
	// then other receivers of the same root.
	Sources []string
	// Swarm, if set, names the receivers pulling the same root together,
	// Self among them, in the same order on every one of them; Sources
	// must list the origin first and every other member. Each block is
	// then fetched from the origin by one member only and by the others
	// from it (see swarm.go). A swarm sizes its own requests: small ones
	// to the origin, and to the members at most BlockSize.
	Swarm []string
	// Crowd, if set, tells who else pulls Root from the origin
	// (Sources[0]) now, Self among them, as they come and go: the
	// receivers then share the blocks to fetch from the origin and fetch
	// the rest from each other (see crowd.go). Not with Swarm.
	Crowd Crowd
	// Self is this receiver's name in Swarm or Crowd.
	Self string
	// Priority is the transfer's share weight in the Scheduler (default
	// Normal).
	Priority Priority
	// BWLimit caps the transfer's bytes per second on the wire; 0 means
	// no cap of its own.
	BWLimit float64
	// BlockSize is the transfer unit: the bytes asked per Get request
	// (default DefaultBlockSize, within [MinBlockSize, MaxBlockSize]).
	// Batches are built counting every missing block as DiskBlockSize.
	BlockSize int
	// DiskBlockSize is the disk's block size (default
	// DefaultDiskBlockSize), used to build batches and to estimate the
	// bytes to move before they are known.
	DiskBlockSize int64
	// Concurrency is the number of requests in flight (default
	// DefaultConcurrency, at most MaxConcurrency).
	Concurrency int
	// Thresholds sets the thresholds by which peers are judged (default:
	// each field's default).
	Thresholds Thresholds
	// Logger receives the transfer's logs; nil discards them.
	Logger *slog.Logger
}

// Validate reports whether s describes a transfer that can run, taking
// zero knobs as their defaults.
func (s Spec) Validate() error {
	return s.withDefaults().check()
}

func (s Spec) withDefaults() Spec {
	if s.Priority == 0 {
		s.Priority = Normal
	}
	if s.BlockSize == 0 {
		s.BlockSize = DefaultBlockSize
	}
	if s.DiskBlockSize == 0 {
		s.DiskBlockSize = DefaultDiskBlockSize
	}
	if s.Concurrency == 0 {
		s.Concurrency = DefaultConcurrency
	}
	s.Thresholds = s.Thresholds.withDefaults()
	return s
}

func (s Spec) check() error {
	var errs []error
	if s.ID == "" {
		errs = append(errs, errors.New("empty id"))
	}
	if err := blockstore.CheckCID(s.Root); err != nil {
		errs = append(errs, fmt.Errorf("root: %w", err))
	} else if s.Root.Type() != blockstore.CodecDagCBOR {
		errs = append(errs, fmt.Errorf("root %s is not a block-map node", s.Root))
	}
	if len(s.Sources) == 0 {
		errs = append(errs, errors.New("no sources"))
	}
	seen := make(map[string]bool, len(s.Sources))
	for _, p := range s.Sources {
		if p == "" || seen[p] {
			errs = append(errs, fmt.Errorf("source %q empty or listed twice", p))
		}
		seen[p] = true
	}
	if err := s.checkSwarm(seen); err != nil {
		errs = append(errs, err)
	}
	if !s.Priority.valid() {
		errs = append(errs, fmt.Errorf("unknown %s", s.Priority))
	}
	if s.BWLimit < 0 || math.IsNaN(s.BWLimit) || math.IsInf(s.BWLimit, 0) {
		errs = append(errs, fmt.Errorf("bandwidth limit %v bytes/s", s.BWLimit))
	}
	if s.BlockSize < MinBlockSize || s.BlockSize > MaxBlockSize {
		errs = append(errs, fmt.Errorf("block size %d not within [%d, %d]", s.BlockSize, MinBlockSize, MaxBlockSize))
	}
	if s.DiskBlockSize <= 0 || s.DiskBlockSize > blockstore.MaxBlockSize {
		errs = append(errs, fmt.Errorf("disk block size %d not within [1, %d]", s.DiskBlockSize, blockstore.MaxBlockSize))
	}
	if s.Concurrency < 1 || s.Concurrency > MaxConcurrency {
		errs = append(errs, fmt.Errorf("concurrency %d not within [1, %d]", s.Concurrency, MaxConcurrency))
	}
	if err := s.Thresholds.check(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("transfer spec %q: %w", s.ID, err)
	}
	return nil
}

// checkSwarm checks Swarm and Self against the sources (sources: the set
// of Sources).
func (s Spec) checkSwarm(sources map[string]bool) error {
	if s.Crowd != nil {
		if len(s.Swarm) > 0 || s.Self == "" {
			return errors.New("a crowd needs a self and no swarm")
		}
		return nil
	}
	if len(s.Swarm) == 0 {
		if s.Self != "" {
			return errors.New("self set without a swarm")
		}
		return nil
	}
	var errs []error
	members := make(map[string]bool, len(s.Swarm))
	for _, m := range s.Swarm {
		switch {
		case m == "" || members[m]:
			errs = append(errs, fmt.Errorf("swarm member %q empty or listed twice", m))
		case len(s.Sources) > 0 && m == s.Sources[0]:
			errs = append(errs, fmt.Errorf("swarm member %q is the origin", m))
		case m != s.Self && !sources[m]:
			errs = append(errs, fmt.Errorf("swarm member %q is not a source", m))
		}
		members[m] = true
	}
	if !members[s.Self] {
		errs = append(errs, fmt.Errorf("self %q is not a swarm member", s.Self))
	}
	return errors.Join(errs...)
}

// batchBlocks is the number of data blocks asked per request.
func (s Spec) batchBlocks() int {
	return max(1, int(int64(s.BlockSize)/s.DiskBlockSize))
}
