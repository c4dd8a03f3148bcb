package datapath

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/ipfs/go-cid"
	"golang.org/x/sync/errgroup"

	"github.com/weft-mesh/weft/mesh/exchange"
)

const (
	// swarmOriginBatch is the bytes asked of the origin per request in a
	// swarm: small, so that each piece goes on to the other members soon
	// after it lands here, and the last pieces do not hold up the end.
	swarmOriginBatch = 64 << 10
	// swarmOriginRequests is the requests each member keeps in flight to
	// the origin. Few, so that the origin's uplink is shared out evenly:
	// with 16 of them (1 MiB) per member, the members' TCP flows from the
	// origin shared its uplink as their congestion control pleased, a
	// member got 1 to 17 blocks a second from it against 11 on average
	// (bench-swarm.sh equal8, every block's arrival traced), and one that
	// got its share fast had more to relay than its uplink carries, so the
	// others waited about a second for it at the end; with two, the
	// members' flows hold a request each in the origin's queue and are
	// served in turn (5 to 16 a second), and the origin's uplink stays
	// full: equal8 last site 13.0 -> 12.45 s, 1.07 -> 1.03 copies.
	// swarmPeerBatch is the bytes asked of another member per
	// request, swarmPeerRequests the requests to each member in flight:
	// where a member's download is as fast as the origin's upload, it has
	// no slack to catch up later, so the relays must keep pace with the
	// origin all along, and two requests let a member send the next
	// blocks while the answer to the last is on its way (8 sites: the last
	// site 1.30 -> 1.21x the bound, against one of 256 KiB). A quarter MiB
	// each: the blocks asked of a member are asked of nobody else until it
	// answers, and a 1 MiB answer on a seventh of a 50 Mbit/s uplink takes
	// about 1.3 s, so at the end the others waited on blocks stuck behind
	// it (against 1 MiB, with the origin asked two at a time, alternated:
	// equal8 last site 12.5 -> 12.4 s over 7 pairs, pull8 12.8 -> 12.5 s
	// over 5, replicate8 12.7 -> 12.4 s over 3, the same copies).
	swarmOriginRequests = 2
	swarmPeerBatch      = 256 << 10
	swarmPeerRequests   = 2
	// swarmPollMin and swarmPollMax bound the wait before asking a member
	// again after it held nothing this receiver lacks; the wait doubles
	// from the one to the other while it holds nothing new. A member's
	// share arrives steadily, so a long wait only lets it pile up.
	swarmPollMin = 10 * time.Millisecond
	swarmPollMax = 80 * time.Millisecond
	// A member's share lags when the other shares came here
	// Thresholds.LagFactor times as far (as fractions of each share), the
	// median of them at least swarmLagSeen of theirs: its link is slower
	// than the others' (a site at a quarter of their rate gets its share
	// from the origin at a quarter of theirs and sends it on at a
	// quarter), and the others take the end of its share from the origin
	// rather than wait for it. Shares under swarmLagBytes are left alone:
	// a transient unevenness between equal links is not worth the copy of
	// a share the origin sends again.
	swarmLagSeen  = 0.5
	swarmLagBytes = 4 << 20
	// swarmProbeMargin is the blocks per member at the end of a
	// receiver's own share that it leaves to its origin requests rather
	// than ask the others for (probeOwnLocked).
	swarmProbeMargin = 4
)

// errMemberSilent marks a member request whose answer stalled for
// Thresholds.MemberRequest.
var errMemberSilent = errors.New("member did not answer a request in time")

// swarm pulls a root together with the other members of Spec.Swarm.
//
// Every missing block has an owner among the members: they take the map's
// distinct data blocks in turn, so every member computes the same owners
// without talking and the shares are equal. Each member fetches the
// blocks it owns from the origin and every other block from its owner: it
// keeps asking each member for the next blocks of its share (get), and
// the member sends those it holds so far, verified and durably stored;
// after an ask that brought nothing the next waits longer, up to
// swarmPollMax. The origin thus sends each block once, to its owner
// (super-seeding), and the members' uplinks carry the other copies. Once
// a member's share is done here, it is also asked for the shares of
// members that have sent nothing for Thresholds.SlowAfter, so a slow owner's blocks
// also come from those that have them already, and once all of those are
// done, it is asked for any block of the others' shares it may hold
// (endgameLocked), so an owner's backlog also drains through the uplinks
// of those it reached first. A request to a member whose answer stalls
// for Thresholds.HedgeAfter is hedged: its blocks and the rest of that
// member's share are asked of the others too (asks.stallNoticed).
//
// A member that fails requests is passed over: its blocks go to the member
// that ranks them highest (rendezvous hashing) among those still alive,
// which fetches them from the origin. A member alive but whose share has
// not come here for Thresholds.Patience, from it or relayed by another (a
// member alive but not receiving: its disk is full, its transfer failed),
// has its share taken from the origin by whoever is idle; while a hedge or
// the endgame brings its blocks through others it is not silent. A member
// whose share lags the others' (laggingLocked) is adopted: once their own
// shares are done, the others fetch its share from the
// origin from the end backwards, each the blocks it ranks highest among
// the members not lagging, while the slow owner goes on from the start;
// the others then fetch those blocks from their adopters. The origin
// sends the slow share about twice at worst, and the others do not wait
// for a slow link. In the tail (tailAsks), with its own share here and at
// most a share's worth missing, a member also asks the origin, whose
// uplink falls idle then, for the last blocks of the share with the most
// missing.
type swarm struct {
	f           *fetcher
	self        string
	members     []string
	originBatch int // blocks per origin request
	peerBatch   int // blocks per member request
	each        int64

	asks                         // its mu guards the fields below too
	shares  map[string][]cid.Cid // by first owner, in map order; stored blocks are dropped as met
	pending map[cid.Cid]int      // not stored here yet: place among the map's distinct data blocks
	size    map[string]int       // blocks of each member's share missing at the start
	left    map[string]int       // blocks of each member's share missing here
	lagging map[string]bool      // members whose shares lagged (laggingLocked)
	lastGot map[string]time.Time // when each member's share last came from a member, or the start
	done    chan struct{}        // closed once pending is empty
	share   int                  // blocks of a share at the start, on average
	tail    tailAsks
	// adopted is whether a block of this receiver's own share came from
	// another member, which had adopted it (probeOwnLocked).
	adopted bool
	// adoptTurn is whether the next origin request takes adopted blocks
	// (of lagging shares) first, rather than this receiver's own.
	adoptTurn bool
}

// newSwarm returns the swarm that fetches missing, the place of each among
// the map's distinct data blocks in ordinals.
func newSwarm(f *fetcher, spec Spec, missing []cid.Cid, ordinals []int) *swarm {
	s := &swarm{
		f:           f,
		self:        spec.Self,
		members:     spec.Swarm,
		originBatch: max(1, int(swarmOriginBatch/spec.DiskBlockSize)),
		peerBatch:   min(spec.batchBlocks(), max(1, int(swarmPeerBatch/spec.DiskBlockSize))),
		each:        spec.DiskBlockSize,
		shares:      make(map[string][]cid.Cid, len(spec.Swarm)),
		pending:     make(map[cid.Cid]int, len(missing)),
		size:        make(map[string]int, len(spec.Swarm)),
		left:        make(map[string]int, len(spec.Swarm)),
		lagging:     make(map[string]bool),
		lastGot:     make(map[string]time.Time, len(spec.Swarm)),
		done:        make(chan struct{}),
	}
	s.asks.init()
	now := time.Now()
	for _, m := range s.members {
		s.lastGot[m] = now
	}
	for i, c := range missing {
		s.pending[c] = ordinals[i]
		o := s.members[ordinals[i]%len(s.members)] // its first owner: every member alive
		s.shares[o] = append(s.shares[o], c)
		s.left[o]++
		s.size[o]++
	}
	s.share = len(s.pending) / len(s.members)
	if len(s.pending) == 0 {
		close(s.done)
	}
	return s
}

// run fetches every missing block.
func (s *swarm) run(ctx context.Context) error {
	return untilDone(ctx, s.done, func(g *errgroup.Group, ctx context.Context) {
		for range swarmOriginRequests {
			g.Go(func() error { return s.fromOrigin(ctx) })
		}
		for _, m := range s.members {
			if m != s.self {
				for range swarmPeerRequests {
					g.Go(func() error { return s.fromMember(ctx, m) })
				}
			}
		}
	})
}

// untilDone runs the goroutines start starts in g, all with ctx, and
// returns nil once done is closed, else the first error. Once every block
// is here, requests still out (to a stalled member, whose blocks came
// from others) are cut short rather than waited for.
func untilDone(ctx context.Context, done <-chan struct{}, start func(g *errgroup.Group, ctx context.Context)) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		select {
		case <-done:
			stop()
		case <-gctx.Done():
		}
		return nil
	})
	start(g, gctx)
	err := g.Wait()
	select {
	case <-done:
		return nil
	default:
		return err
	}
}

// fromOrigin fetches the blocks this receiver owns from the origin (or,
// should it fail, from whichever source has them), until none is missing.
func (s *swarm) fromOrigin(ctx context.Context) error {
	for {
		batch, wake := s.takeOwn()
		tail := batch == nil
		if tail {
			batch = s.takeTail()
		}
		if batch == nil {
			idle := swarmPollMax // a wake, or a look now and then
			if end, err := pause(ctx, s.done, wake, &idle); end {
				return err
			}
			continue
		}
		got, err := s.f.fetch(ctx, batch, nil, s.each, true)
		s.landed(batch, func(c cid.Cid) bool { _, ok := got[c]; return ok }, "")
		if tail {
			s.tailEnded()
		}
		if err != nil {
			return err
		}
	}
}

// fromMember fetches from m the blocks it holds that are missing here,
// its own share first, until none is missing or m sent a bad block.
func (s *swarm) fromMember(ctx context.Context, m string) error {
	wait := swarmPollMin
	for {
		if s.f.isDropped(m) {
			return nil
		}
		var batch []cid.Cid
		var change <-chan struct{}
		if !s.f.backingOff(m, time.Now()) {
			batch, change = s.claimFrom(m)
		}
		if len(batch) > 0 {
			// m sends what it holds of batch, maybe nothing yet: the
			// request is charged for what it brings once it is here.
			blocks, err, keepErr := s.f.askHedged(ctx, m, batch, &s.asks)
			s.landed(batch, func(c cid.Cid) bool { _, ok := blocks[c]; return ok }, m)
			if keepErr != nil {
				return keepErr
			}
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case err != nil:
				s.memberFailed() // request noted the failure
			case len(blocks) > 0:
				wait = swarmPollMin
				continue
			}
		}
		// Nothing to ask (all in flight elsewhere) waits for a change;
		// nothing sent or a failure waits longer each time.
		if end, err := pause(ctx, s.done, change, &wait); end {
			return err
		}
	}
}

// pause waits for change, the transfer's end (done closed or ctx ended)
// or *wait, doubling *wait up to swarmPollMax when it runs out. end is
// true when the transfer ended: err is nil when done, ctx's error else.
func pause(ctx context.Context, done, change <-chan struct{}, wait *time.Duration) (end bool, err error) {
	timer := time.NewTimer(*wait)
	defer timer.Stop()
	select {
	case <-done:
	case <-ctx.Done():
	case <-change:
	case <-timer.C:
		*wait = min(2**wait, swarmPollMax)
	}
	select {
	case <-done:
		return true, nil
	case <-ctx.Done():
		return true, ctx.Err()
	default:
		return false, nil
	}
}

// takeOwn claims up to originBatch missing blocks this receiver is to
// fetch from the origin: those it owns among the live members, and when
// there are none, the share of a member that has sent nothing for
// Thresholds.Patience. It returns nil and a channel closed on the next
// change when there is nothing to take.
func (s *swarm) takeOwn() ([]cid.Cid, <-chan struct{}) {
	now := time.Now()
	alive := s.aliveAt(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	lagging := s.laggingLocked()
	own := func(batch []cid.Cid) []cid.Cid {
		for _, m := range s.members {
			if m == s.self || !alive(m) {
				batch = s.scan(m, batch, s.originBatch, func(c cid.Cid) bool { return s.owner(c, alive) == s.self })
			}
		}
		return batch
	}
	adopted := func(batch []cid.Cid) []cid.Cid {
		for _, m := range s.members {
			if m != s.self && lagging[m] && alive(m) {
				batch = s.scanBack(m, batch, s.originBatch, func(c cid.Cid) bool { return s.adopter(c, m, lagging, alive) == s.self })
			}
		}
		return batch
	}
	// Adopted blocks take turns with this receiver's own, from the moment
	// a share is found lagging: each adopter sends its part of that share
	// on to the others while its own share still comes, instead of after
	// it, when nothing else is left to overlap with those relays.
	var batch []cid.Cid
	if s.adoptTurn {
		if batch = adopted(nil); len(batch) == 0 {
			batch = own(nil)
		}
	} else if batch = own(nil); len(batch) == 0 {
		batch = adopted(nil)
	}
	s.adoptTurn = !s.adoptTurn
	if len(batch) == 0 {
		// A lagging member's share has its adopters; this is for members
		// that send nothing at all.
		for _, m := range s.members {
			if m != s.self && !lagging[m] && now.Sub(s.lastGot[m]) > s.f.thresholds.Patience && !s.answeringLocked(m) {
				n := len(batch)
				batch = s.scan(m, batch, s.originBatch, anyBlock)
				if len(batch) > n {
					s.f.log.Debug("swarm member silent: taking its share from the origin", "member", m, "silent", now.Sub(s.lastGot[m]), "blocks", len(batch)-n)
				}
			}
		}
	}
	s.claimLocked(batch, "")
	if len(batch) == 0 {
		return nil, s.changed
	}
	return batch, nil
}

// takeTail claims, in the swarm's tail (tailAsks), up to originBatch of
// the last missing blocks of the share with the most missing, to ask the
// origin for; nil when not in the tail or none is free.
func (s *swarm) takeTail() []cid.Cid {
	alive := s.aliveAt(time.Now())
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.tail.open(s.left[s.self], len(s.pending), s.share) {
		return nil
	}
	lagging := s.laggingLocked()
	relaying := func(o string) bool { return o != s.self && alive(o) && !lagging[o] }
	for _, m := range mostMissingFirst(s.members, s.left, relaying) {
		if batch := s.scanBack(m, nil, s.originBatch, anyBlock); len(batch) > 0 {
			s.tail.took(len(batch))
			s.claimLocked(batch, "")
			return batch
		}
	}
	return nil
}

// tailEnded counts the end of a tail request.
func (s *swarm) tailEnded() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tail.ended()
}

// anyBlock is the scan filter that takes every block.
func anyBlock(cid.Cid) bool { return true }

// claimFrom claims up to peerBatch missing blocks not in flight to ask m
// for: of its share, or once that is done here, the blocks m adopted of
// lagging shares and the shares of members other than this one that sent
// nothing for Thresholds.SlowAfter, which m may have fetched already. Asking m for
// the shares of members that do send would take their blocks away from
// them (claimed blocks are asked of nobody else), so only once all those
// are done here too is m asked for blocks of the others' shares
// (endgameLocked). With nothing to claim it returns a channel closed on
// the next change.
func (s *swarm) claimFrom(m string) ([]cid.Cid, <-chan struct{}) {
	now := time.Now()
	alive := s.aliveAt(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	lagging := s.laggingLocked()
	// A lagging member is asked for little at a time: the blocks claimed
	// from it are asked of nobody else until it answers, and its adopters
	// are to fetch the rest of its share.
	n := s.peerBatch
	if lagging[m] {
		n = s.originBatch
	} else if inTail(s.left[s.self], len(s.pending), s.share) {
		n = max(1, n/swarmTailAskDiv)
	}
	batch := s.hedgeLocked(m, n/2)
	// The blocks m adopted go with its own share's, half the ask at
	// most: m fetched them early (takeOwn), and asked for only once its
	// share was done here they all came at the end, from every adopter at
	// once (bench-swarm.sh unequal8: adopted by 8.6 s, relayed at 12-13 s).
	batch = s.adoptedBy(m, batch, len(batch)+max(1, n/2), lagging, alive)
	batch = s.scan(m, batch, n, anyBlock)
	batch = s.probeOwnLocked(m, batch, n, lagging, alive)
	if len(batch) == 0 && len(s.shares[m]) == 0 {
		// This member's own share, should the others have found it
		// lagging: its end is then with its adopters, m among them.
		batch = s.scanBack(s.self, batch, n, func(c cid.Cid) bool { return s.adopter(c, s.self, lagging, alive) == m })
		batch = s.adoptedBy(m, batch, s.peerBatch, lagging, alive)
		for _, o := range s.members {
			if o != m && o != s.self && now.Sub(s.lastGot[o]) > s.f.thresholds.SlowAfter {
				batch = s.scan(o, batch, s.peerBatch, anyBlock)
			}
		}
		if len(batch) == 0 {
			batch = s.endgameLocked(m, batch, n, func(o string) bool {
				return alive(o) && !lagging[o] && now.Sub(s.lastGot[o]) <= s.f.thresholds.Patience
			})
		}
	}
	if len(batch) == 0 {
		return nil, s.changed
	}
	s.claimLocked(batch, m)
	return batch, nil
}

// probeOwnLocked appends to batch blocks of this receiver's own share
// that m would have adopted, were the others to find that share lagging:
// the end of it, from the back, for m to send what it holds. Nothing here
// says whether they did (the others judge a share by how it comes to
// them, and to a member on a slow link every share comes slowly), and
// without asking, a slow member went on fetching its whole share from the
// origin while its adopters fetched it too. So each ask carries one such
// block beyond its n, until one comes back: the share was adopted (or a
// member in the tail took some of it, tailAsks), and half an ask's worth
// goes from then on. The last blocks of the share (swarmProbeMargin per
// member) are left to the origin requests, which take it from the front
// and would otherwise find its end in flight to members that may lack it.
// s.mu must be held.
func (s *swarm) probeOwnLocked(m string, batch []cid.Cid, n int, lagging map[string]bool, alive func(string) bool) []cid.Cid {
	if s.left[s.self] <= swarmProbeMargin*len(s.members) {
		return batch
	}
	extra := 1
	if s.adopted {
		extra = max(1, n/2)
	}
	return s.scanBack(s.self, batch, len(batch)+extra, func(c cid.Cid) bool { return s.adopter(c, s.self, lagging, alive) == m })
}

// adoptedBy appends to batch, up to n in all, blocks of the lagging
// shares of members other than m and this receiver that m adopted (and
// so fetches from the origin, from their end backwards). s.mu must be
// held.
func (s *swarm) adoptedBy(m string, batch []cid.Cid, n int, lagging map[string]bool, alive func(string) bool) []cid.Cid {
	for _, o := range s.members {
		if o != m && o != s.self && lagging[o] {
			batch = s.scanBack(o, batch, n, func(c cid.Cid) bool { return s.adopter(c, o, lagging, alive) == m })
		}
	}
	return batch
}

// hedgeLocked returns up to n blocks of the shares of members other than
// m with a request from here that stalled (asks.stallNoticed), to ask m
// for as well, first. s.mu must be held.
func (s *swarm) hedgeLocked(m string, n int) []cid.Cid {
	var batch []cid.Cid
	for _, o := range s.members {
		if o != m && o != s.self && s.stalled[o] > 0 {
			batch = s.scan(o, batch, n, anyBlock)
		}
	}
	return batch
}

// endgameLocked appends to batch up to n blocks of the other members'
// shares, the one with the most missing first, to ask m for, whose own
// share is done here: its uplink is idle now, and it may hold blocks whose
// owner has yet to send them here. An owner relays its share to every
// other member over one uplink and gets through to some sooner than to
// others (each TCP flow has its own share of the owner's link): the last
// blocks of a push are an owner's backlog to the ones it reached last,
// which those it reached first can relay too. m answers at once with what
// it has; the blocks it lacks go back to their owner's asks a round trip
// later. Only the shares of members relaying them (relaying: alive, not
// lagging, not silent) are asked for: the blocks of the others are
// fetched from the origin by their new owners or adopters, this receiver
// among them, and an ask here would keep them in flight, away from that
// fetch. s.mu must be held.
func (s *swarm) endgameLocked(m string, batch []cid.Cid, n int, relaying func(string) bool) []cid.Cid {
	for _, o := range mostMissingFirst(s.members, s.left, func(o string) bool { return o != m && o != s.self && relaying(o) }) {
		batch = s.scan(o, batch, n, anyBlock)
	}
	return batch
}

// mostMissingFirst returns the members that keep takes and that have
// blocks left, those with the most left first.
func mostMissingFirst(members []string, left map[string]int, keep func(string) bool) []string {
	out := make([]string, 0, len(members))
	for _, o := range members {
		if left[o] > 0 && keep(o) {
			out = append(out, o)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return left[b] - left[a] })
	return out
}

// scan appends to out up to n blocks of m's share that are missing, not in
// flight and pass ok, and drops the stored ones from the share on the way.
// s.mu must be held.
func (s *swarm) scan(m string, out []cid.Cid, n int, ok func(cid.Cid) bool) []cid.Cid {
	share := s.shares[m]
	kept := share[:0]
	for i, c := range share {
		if len(out) >= n {
			kept = append(kept, share[i:]...)
			break
		}
		if _, missing := s.pending[c]; !missing {
			continue
		}
		kept = append(kept, c)
		if !s.askedLocked(c) && ok(c) {
			out = append(out, c)
		}
	}
	s.shares[m] = kept
	return out
}

// aliveAt returns whether a member counts as alive at now: this receiver,
// or one not dropped and not backing off after a failed request.
func (s *swarm) aliveAt(now time.Time) func(string) bool {
	return func(m string) bool {
		return m == s.self || (!s.f.isDropped(m) && !s.f.backingOff(m, now))
	}
}

// scanBack is scan from the end of m's share backwards, without dropping
// the stored blocks on the way. s.mu must be held.
func (s *swarm) scanBack(m string, out []cid.Cid, n int, ok func(cid.Cid) bool) []cid.Cid {
	share := s.shares[m]
	for i := len(share) - 1; i >= 0 && len(out) < n; i-- {
		c := share[i]
		if _, missing := s.pending[c]; !missing {
			continue
		}
		if !s.askedLocked(c) && ok(c) {
			out = append(out, c)
		}
	}
	return out
}

// laggingLocked returns the members whose shares lag the others' here, or
// once did: a slow link stays slow, and the adopters must finish the share
// they took up rather than hand its rest back once it is small. s.mu must
// be held.
func (s *swarm) laggingLocked() map[string]bool {
	markLagging(shareProgress{s.members, s.size, s.left, s.each}, s.f.thresholds.LagFactor, s.lagging, func(m string, came, median float64) {
		s.f.log.Debug("swarm member lags: adopting its share", "member", m, "came", came, "others_median", median)
	})
	return s.lagging
}

// shareProgress is how far each member's share has come here: size blocks
// of it missing at the start, left still missing, each block each bytes.
type shareProgress struct {
	members    []string
	size, left map[string]int
	each       int64
}

// came is the part of m's share that has come.
func (p shareProgress) came(m string) float64 {
	if p.size[m] == 0 {
		return 1
	}
	return 1 - float64(p.left[m])/float64(p.size[m])
}

// markLagging adds to lagging (and reports to found) each member whose
// share, of at least swarmLagBytes, came at under 1/factor of the others'
// median once that median is past swarmLagSeen.
func markLagging(p shareProgress, factor float64, lagging map[string]bool, found func(m string, came, median float64)) {
	others := make([]float64, 0, len(p.members))
	for _, m := range p.members {
		if lagging[m] || int64(p.size[m])*p.each < swarmLagBytes {
			continue
		}
		others = others[:0]
		for _, o := range p.members {
			if o != m {
				others = append(others, p.came(o))
			}
		}
		if len(others) == 0 {
			return // one member alone
		}
		slices.Sort(others)
		if median := others[len(others)/2]; median >= swarmLagSeen && p.came(m)*factor < median {
			lagging[m] = true
			found(m, p.came(m), median)
		}
	}
}

// adopter returns the member that fetches c, of lagging member m's share,
// from the origin: the one that ranks it highest among the members alive
// and not lagging.
func (s *swarm) adopter(c cid.Cid, m string, lagging map[string]bool, alive func(string) bool) string {
	best, bestScore := "", uint64(0)
	for _, o := range s.members {
		if o == m || lagging[o] || !alive(o) {
			continue
		}
		if sc := rank(o, c); best == "" || sc > bestScore {
			best, bestScore = o, sc
		}
	}
	return best
}

// landed ends the flight of batch: the blocks stored reports are stored
// here (nil: none), the others missing still. from is the member that
// sent them, if any.
func (s *swarm) landed(batch []cid.Cid, stored func(cid.Cid) bool, from string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	some := false
	now := time.Now()
	s.releaseLocked(batch, from)
	for _, c := range batch {
		if stored != nil && stored(c) {
			if ord, ok := s.pending[c]; ok {
				owner := s.members[ord%len(s.members)]
				s.left[owner]--
				delete(s.pending, c)
				if from != "" {
					// Its owner sent it on, if not here: its share
					// comes, whoever relays it.
					s.lastGot[owner] = now
					s.adopted = s.adopted || owner == s.self
				}
			}
			some = true
		}
	}
	if from != "" && some {
		s.lastGot[from] = now
	}
	s.wakeLocked()
}

// memberFailed wakes the origin fetchers after a member failed a request:
// they may own some of its share now.
func (s *swarm) memberFailed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wakeLocked()
}

// wakeLocked signals a change. s.mu must be held.
func (s *swarm) wakeLocked() {
	s.signalLocked()
	if len(s.pending) == 0 {
		select {
		case <-s.done:
		default:
			close(s.done)
		}
	}
}

// owner returns the member that fetches c (pending) from the origin: the members
// take the map's distinct blocks in turn, so their shares are equal and
// each fetches its own in map order; a block whose member is not alive
// goes to the one that ranks it highest among those alive (self always
// is), which spreads a dead member's share over the others.
func (s *swarm) owner(c cid.Cid, alive func(string) bool) string {
	if m := s.members[s.pending[c]%len(s.members)]; alive(m) {
		return m
	}
	best, bestScore := "", uint64(0)
	for _, m := range s.members {
		if !alive(m) {
			continue
		}
		if sc := rank(m, c); best == "" || sc > bestScore {
			best, bestScore = m, sc
		}
	}
	return best
}

// rank is member m's score for block c in rendezvous hashing.
func rank(m string, c cid.Cid) uint64 {
	h := fnv.New64a()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(m)))
	h.Write(n[:])
	h.Write([]byte(m))
	h.Write(c.Bytes())
	return h.Sum64()
}

// askMember gets what member m of a swarm or crowd holds of batch, as get
// does, failing once a window of Thresholds.MemberRequest passes in which
// its answer barely moved: a member that takes the request and never
// answers would hold batch in flight, asked of nobody else, for ever. A
// bound on the whole request instead cut short answers that were coming
// steadily: a site on a slow link with requests to seven members in
// flight got each 1 MiB answer in about 9 s (bench-swarm.sh unequal8),
// threw it away at the bound and took the member for failed, and finished
// in 64-83 s instead of the 43 s its link allows. One that stalls counts
// as failed (get notes it).
func (f *fetcher) askMember(ctx context.Context, m string, batch []cid.Cid) (got map[cid.Cid][]byte, err, keepErr error) {
	got, err, keepErr = f.get(exchange.WithStallWindow(ctx, f.thresholds.MemberRequest), m, batch, 0, true)
	if errors.Is(err, exchange.ErrStalled) {
		err = fmt.Errorf("%w: %w", errMemberSilent, err)
	}
	return got, err, keepErr
}
