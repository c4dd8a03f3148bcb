package datapath

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"golang.org/x/sync/errgroup"
)

// Crowd is a changing view of the receivers pulling one root from the
// same origin at the same time, as the origin, acting as their tracker,
// tells each of them. Members returns them in the order they joined (the
// receiver itself among them) and a channel closed once the list
// changes. It must be safe for concurrent use and must not block.
type Crowd interface {
	Members() ([]string, <-chan struct{})
}

// crowd pulls a root together with whoever else pulls it from the same
// origin now (Spec.Crowd): a swarm whose members come and go.
//
// Every missing block has an owner among the members alive: the one that
// ranks it highest (rendezvous hashing), so every member computes the
// same owners from the same list, and a member that joins or leaves moves
// only the blocks it ranks highest. Each member fetches the blocks it owns
// from the origin and asks every other member for the blocks that member
// owns, as a swarm does: the origin sends each block about once. A member
// that joins late owns blocks the members before it may already hold, as
// their owner before it came: it asks that earlier owner for them first,
// until one ask brings nothing (each member fetches its share in map
// order, so what the earlier one held is the start of its share; what it
// had in flight from the origin then, swarmOriginRequests requests, may
// come twice). A
// member that fails requests is passed over for a while and its blocks
// owned by the others; one alive but whose share has not come here for
// Thresholds.Patience, from it or relayed by another (as in a swarm), has
// its share taken from the origin by whoever is idle, and so are the
// blocks a member sent with bad bytes: they are not asked of it again. One
// whose share lags the others' (a slow link that still trickles blocks)
// is adopted as in a swarm (swarm.laggingLocked): the others take the end
// of its share from the origin at once, in turn with their own, and it is
// asked for little at a time; its own asks find that end with its
// adopters (swarm.probeOwnLocked). A
// member whose share is done here is asked for the others' blocks as in
// a swarm's endgame (swarm.endgameLocked), a request to a member whose
// answer stalls is hedged as in a swarm (asks.stallNoticed), and in the
// tail the origin is asked for the last blocks of the share with the most
// missing, as in a swarm (tailAsks).
type crowd struct {
	f           *fetcher
	self        string
	view        Crowd
	originBatch int // blocks per origin request among others
	peerBatch   int // blocks per member request
	each        int64
	// alone: while the crowd is this receiver alone, it pulls as a plain
	// transfer does: aloneRequests of aloneBatch blocks in flight, not the
	// small requests that let the others relay each piece soon.
	aloneBatch    int
	aloneRequests int
	origin        string

	asks                           // its mu guards the fields below too
	members   []string             // as the view said last, self among them
	order     []cid.Cid            // missing at the start, in map order; stored blocks dropped on each rebuild of shares
	pending   map[cid.Cid]bool     // not stored here yet
	lastGot   map[string]time.Time // when each member's share last came from a member, or it was first seen
	exhausted map[string]bool      // earlier members that held none of this one's share when asked
	asking    map[string]bool      // members with fetchers running
	// shares holds, for each member alive as ownersOf names them (live),
	// the missing blocks it owns in map order, built once per change of
	// the members alive: a claim walks the front of one share, not every
	// missing block, and a rank costs a hash per member.
	shares   map[string][]cid.Cid
	live     []string
	ownersOf string
	size     map[string]int  // blocks of each live member's share at the last rebuild of shares
	left     map[string]int  // of those, missing here still
	lagging  map[string]bool // members whose shares lagged (laggingLocked), as in a swarm
	tail     tailAsks
	// adopted and adoptTurn: as a swarm's.
	adopted   bool
	adoptTurn bool
	// aloneCtx is the context of the requests made while alone, cancelled
	// once others join: the blocks they asked for, large requests, would
	// otherwise go on arriving here while the others, owning most of them
	// now, fetch them from the origin too.
	aloneCtx    context.Context
	aloneCancel context.CancelFunc
	runCtx      context.Context // the parent of aloneCtx
	done        chan struct{}   // closed once pending is empty
}

func newCrowd(f *fetcher, spec Spec, missing []cid.Cid, ordinals []int) *crowd {
	c := &crowd{
		f:             f,
		self:          spec.Self,
		view:          spec.Crowd,
		originBatch:   max(1, int(swarmOriginBatch/spec.DiskBlockSize)),
		peerBatch:     min(spec.batchBlocks(), max(1, int(swarmPeerBatch/spec.DiskBlockSize))),
		each:          spec.DiskBlockSize,
		aloneBatch:    spec.batchBlocks(),
		aloneRequests: spec.Concurrency,
		origin:        spec.Sources[0],
		pending:       make(map[cid.Cid]bool, len(missing)),
		lastGot:       make(map[string]time.Time),
		exhausted:     make(map[string]bool),
		asking:        make(map[string]bool),
		lagging:       make(map[string]bool),
		done:          make(chan struct{}),
	}
	c.asks.init()
	idx := make([]int, len(missing))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return ordinals[a] - ordinals[b] })
	for _, i := range idx {
		c.order = append(c.order, missing[i])
		c.pending[missing[i]] = true
	}
	if len(c.pending) == 0 {
		close(c.done)
	}
	return c
}

// run fetches every missing block, following the view's changes.
func (c *crowd) run(ctx context.Context) error {
	defer func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.aloneCancel()
	}()
	return untilDone(ctx, c.done, func(g *errgroup.Group, ctx context.Context) {
		c.runCtx = ctx
		c.aloneCtx, c.aloneCancel = context.WithCancel(ctx)
		for i := range max(swarmOriginRequests, c.aloneRequests) {
			g.Go(func() error { return c.fromOrigin(ctx, i < swarmOriginRequests, i < c.aloneRequests) })
		}
		g.Go(func() error {
			for {
				members, changed := c.view.Members()
				for _, m := range c.follow(members) {
					for range swarmPeerRequests {
						g.Go(func() error { return c.fromMember(ctx, m) })
					}
				}
				select {
				case <-c.done:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				case <-changed:
				}
			}
		})
	})
}

// follow takes members as the current list and returns those to start
// asking.
func (c *crowd) follow(members []string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.Contains(members, c.self) {
		members = append(slices.Clone(members), c.self) // joined here before the tracker says so
	}
	c.members = members
	switch {
	case len(members) > 1:
		c.aloneCancel()
	case c.aloneCtx.Err() != nil: // alone again: the others left
		c.aloneCtx, c.aloneCancel = context.WithCancel(c.runCtx)
	}
	var start []string
	now := time.Now()
	for _, m := range members {
		if _, seen := c.lastGot[m]; !seen {
			c.lastGot[m] = now
		}
		if m != c.self && !c.asking[m] {
			c.asking[m] = true
			start = append(start, m)
		}
	}
	c.wakeLocked()
	return start
}

// fromOrigin fetches the blocks this receiver owns: from the member that
// owned them before this one joined while it has them, else from the
// origin (or, should it fail, from whichever source has them). It runs
// while in a crowd if inCrowd, while alone if alone.
func (c *crowd) fromOrigin(ctx context.Context, inCrowd, alone bool) error {
	for {
		batch, earlier, actx, wake := c.takeOwn(inCrowd, alone)
		tail := batch == nil && inCrowd
		if tail {
			batch = c.takeTail()
		}
		if batch == nil {
			idle := swarmPollMax // a wake, or a look now and then
			if end, err := pause(ctx, c.done, wake, &idle); end {
				return err
			}
			continue
		}
		if earlier != "" {
			got, err, keepErr := c.f.askMember(ctx, earlier, batch)
			if keepErr != nil {
				return keepErr
			}
			if err == nil && len(got) == 0 {
				c.exhaust(earlier)
			}
			c.landed(batch, got, earlier)
			continue
		}
		if actx != nil {
			// Alone: from the origin in large requests, cut short when
			// others join; what arrived by then is stored.
			got, err, keepErr := c.f.get(actx, c.origin, batch, c.each*int64(len(batch)), true)
			c.landed(batch, got, "")
			if keepErr != nil || err == nil || actx.Err() != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if keepErr != nil {
					return keepErr
				}
				continue
			}
			batch = slices.DeleteFunc(batch, func(b cid.Cid) bool { _, ok := got[b]; return ok })
		}
		got, err := c.f.fetch(ctx, batch, nil, c.each, true)
		c.landed(batch, got, "")
		if tail {
			c.tailEnded()
		}
		if err != nil {
			return err
		}
	}
}

// takeTail claims, in the crowd's tail (tailAsks), up to originBatch of
// the last missing blocks of the share with the most missing, to ask the
// origin for, as swarm.takeTail does; nil when not in the tail or none is
// free.
func (c *crowd) takeTail() []cid.Cid {
	alive := c.aliveAt(time.Now())
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.members) < 2 {
		return nil
	}
	c.sharesLocked(alive)
	share := c.shareLocked()
	if !c.tail.open(c.left[c.self], len(c.pending), share) {
		return nil
	}
	lagging := c.laggingLocked()
	relaying := func(o string) bool { return o != c.self && !lagging[o] }
	var batch []cid.Cid
	for _, m := range mostMissingFirst(c.live, c.left, relaying) {
		if c.scanBack(m, c.originBatch, anyBlock, &batch); len(batch) > 0 {
			c.tail.took(len(batch))
			c.claimLocked(batch, "")
			return batch
		}
	}
	return nil
}

// shareLocked returns the blocks of a share on average, as the shares
// were last built. c.mu must be held, the shares built.
func (c *crowd) shareLocked() int { return len(c.order) / max(1, len(c.live)) }

// tailEnded counts the end of a tail request.
func (c *crowd) tailEnded() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tail.ended()
}

// fromMember fetches from m the blocks it owns that are missing here while
// m is a member, as swarm.fromMember does.
func (c *crowd) fromMember(ctx context.Context, m string) error {
	wait := swarmPollMin
	for {
		batch, change, member := c.claimFrom(m)
		if !member || c.f.isDropped(m) {
			return nil
		}
		if len(batch) > 0 {
			got, err, keepErr := c.f.askHedged(ctx, m, batch, &c.asks)
			c.landed(batch, got, m)
			switch {
			case keepErr != nil:
				return keepErr
			case ctx.Err() != nil:
				return ctx.Err()
			case err == nil && len(got) > 0:
				wait = swarmPollMin
				continue
			}
		}
		if end, err := pause(ctx, c.done, change, &wait); end {
			return err
		}
	}
}

// takeOwn claims up to originBatch missing blocks this receiver owns, and
// when there are none, of a member silent for Thresholds.Patience. earlier is
// the member to ask for them first ("": the origin). Alone, it claims
// aloneBatch blocks and actx, the context to ask them in. With nothing to
// take it returns nil and a channel closed on the next change.
func (c *crowd) takeOwn(inCrowd, alone bool) (batch []cid.Cid, earlier string, actx context.Context, wake <-chan struct{}) {
	now := time.Now()
	alive := c.aliveAt(now)
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.originBatch
	switch {
	case len(c.members) == 0:
		return nil, "", nil, c.changed // the view not read yet
	case len(c.members) == 1 && !alone, len(c.members) > 1 && !inCrowd:
		return nil, "", nil, c.changed
	case len(c.members) == 1:
		n, actx = c.aloneBatch, c.aloneCtx
	}
	before := c.members[:max(0, slices.Index(c.members, c.self))]
	c.sharesLocked(alive)
	own := func() {
		// The blocks of one earlier owner at a time: it is asked for them.
		c.scan(c.self, n, func(b cid.Cid) bool {
			e := c.owner(b, before, func(m string) bool { return alive(m) && !c.exhausted[m] })
			if len(batch) == 0 {
				earlier = e
			}
			return e == earlier
		}, &batch)
	}
	lagging := c.laggingLocked()
	adopted := func() {
		for _, o := range c.live {
			if len(batch) == 0 && o != c.self && lagging[o] {
				c.scanBack(o, n, func(b cid.Cid) bool { return c.adopter(b, o, lagging) == c.self }, &batch)
			}
		}
	}
	// Adopted blocks take turns with this receiver's own, as in a swarm
	// (swarm.takeOwn).
	if c.adoptTurn {
		if adopted(); len(batch) == 0 {
			own()
		}
	} else if own(); len(batch) == 0 {
		adopted()
	}
	c.adoptTurn = !c.adoptTurn
	// A lagging member's share has its adopters; this is for members
	// that send nothing at all, not those still answering a request.
	for _, o := range c.live {
		if len(batch) == 0 && o != c.self && !lagging[o] && now.Sub(c.lastGot[o]) > c.f.thresholds.Patience && !c.answeringLocked(o) {
			c.scan(o, n, anyBlock, &batch)
			if len(batch) > 0 {
				c.f.log.Debug("crowd member silent: taking its share from the origin", "member", o, "silent", now.Sub(c.lastGot[o]), "blocks", len(batch))
			}
		}
	}
	if len(batch) == 0 {
		// The blocks members sent with bad bytes: not asked of them again.
		for _, o := range c.live {
			for _, b := range c.f.badFrom(o) {
				if len(batch) < n && c.pending[b] && !c.askedLocked(b) && o != c.self && c.owner(b, c.live, all) == o {
					batch = append(batch, b)
				}
			}
		}
	}
	if len(batch) == 0 {
		return nil, "", nil, c.changed
	}
	c.claimLocked(batch, earlier)
	return batch, earlier, actx, nil
}

// claimFrom claims up to peerBatch missing blocks m owns to ask m for,
// and once those are done here, the blocks it may hold of the others'
// shares (as swarm.endgameLocked); member is false once m left the crowd.
func (c *crowd) claimFrom(m string) (batch []cid.Cid, change <-chan struct{}, member bool) {
	now := time.Now()
	alive := c.aliveAt(now)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.Contains(c.members, m) {
		delete(c.asking, m) // asked again should it come back
		return nil, nil, false
	}
	if !c.f.backingOff(m, now) {
		c.sharesLocked(alive)
		lagging := c.laggingLocked()
		// A lagging member is asked for little at a time: what is
		// claimed from it is asked of nobody else until it answers.
		n := c.peerBatch
		if lagging[m] {
			n = c.originBatch
		} else if inTail(c.left[c.self], len(c.pending), c.shareLocked()) {
			n = max(1, n/swarmTailAskDiv)
		}
		notBad := func(b cid.Cid) bool { return !c.f.sentBad(m, b) }
		adoptedBy := func(o string) func(cid.Cid) bool {
			return func(b cid.Cid) bool { return notBad(b) && c.adopter(b, o, lagging) == m }
		}
		c.hedgeLocked(m, n/2, notBad, &batch)
		// The blocks m adopted go with its own share's, half the ask at
		// most, and one block of this receiver's own share that m would
		// adopt goes beyond them, as in a swarm (swarm.claimFrom,
		// swarm.probeOwnLocked).
		adoptedMost := len(batch) + max(1, n/2)
		for _, o := range c.live {
			if o != m && o != c.self && lagging[o] {
				c.scanBack(o, adoptedMost, adoptedBy(o), &batch)
			}
		}
		c.scan(m, n, notBad, &batch)
		if c.left[c.self] > swarmProbeMargin*len(c.live) {
			extra := 1
			if c.adopted {
				extra = max(1, n/2)
			}
			c.scanBack(c.self, len(batch)+extra, adoptedBy(c.self), &batch)
		}
		if len(batch) == 0 && len(c.shares[m]) == 0 {
			// m's own share is done here: the blocks it adopted of
			// lagging shares, this receiver's among them.
			for _, o := range c.live {
				if o != m && lagging[o] {
					c.scanBack(o, n, adoptedBy(o), &batch)
				}
			}
			if len(batch) == 0 {
				relaying := func(o string) bool { return !lagging[o] && now.Sub(c.lastGot[o]) <= c.f.thresholds.Patience }
				c.endgameLocked(m, n, relaying, notBad, &batch)
			}
		}
	}
	if len(batch) == 0 {
		return nil, c.changed, true
	}
	c.claimLocked(batch, m)
	return batch, nil, true
}

// hedgeLocked appends to out, up to n blocks in all, blocks of the shares
// of live members other than m with a request from here that stalled
// (asks.stallNoticed), that ok takes, to ask m for as well, first, as
// swarm.hedgeLocked does. c.mu must be held.
func (c *crowd) hedgeLocked(m string, n int, ok func(cid.Cid) bool, out *[]cid.Cid) {
	for _, o := range c.live {
		if o != m && o != c.self && c.stalled[o] > 0 {
			c.scan(o, n, ok, out)
		}
	}
}

// endgameLocked appends to out, up to n blocks in all, blocks of the
// other live members' shares, the one with the most missing first, that
// ok takes, to ask m for once its own share is done here, as
// swarm.endgameLocked does: only of the members relaying theirs.
// c.mu must be held.
func (c *crowd) endgameLocked(m string, n int, relaying func(string) bool, ok func(cid.Cid) bool, out *[]cid.Cid) {
	for _, o := range mostMissingFirst(c.live, c.left, func(o string) bool { return o != m && o != c.self && relaying(o) }) {
		c.scan(o, n, ok, out)
	}
}

// scan appends to out, up to n blocks in all, the blocks of m's share
// that are missing, not in flight and that ok takes, in map order (the
// caller claims them: claimLocked). It drops the stored blocks at the
// front of the share: claims take from the front, so the walk is about
// the blocks in flight and n long, not the share's. c.mu must be held.
func (c *crowd) scan(m string, n int, ok func(cid.Cid) bool, out *[]cid.Cid) {
	share := c.shares[m]
	for len(share) > 0 && !c.pending[share[0]] {
		share = share[1:]
	}
	c.shares[m] = share
	for _, b := range share {
		if len(*out) >= n {
			return
		}
		if c.pending[b] && !c.askedLocked(b) && ok(b) {
			*out = append(*out, b)
		}
	}
}

// sharesLocked brings the shares up to date with the members alive now:
// when they changed, every missing block goes to its owner among them.
// c.mu must be held.
func (c *crowd) sharesLocked(alive func(string) bool) {
	var live []string
	for _, m := range c.members {
		if alive(m) {
			live = append(live, m)
		}
	}
	key := strings.Join(live, "\x00")
	if c.shares != nil && key == c.ownersOf {
		return
	}
	c.ownersOf, c.live = key, live
	c.shares = make(map[string][]cid.Cid, len(live))
	kept := c.order[:0]
	for _, b := range c.order {
		if c.pending[b] {
			kept = append(kept, b)
			o := c.owner(b, live, all)
			c.shares[o] = append(c.shares[o], b)
		}
	}
	clear(c.order[len(kept):])
	c.order = kept
	c.size, c.left = make(map[string]int, len(live)), make(map[string]int, len(live))
	for o, share := range c.shares {
		c.size[o], c.left[o] = len(share), len(share)
	}
}

// scanBack is scan from the end of m's share backwards, for the adopters
// of a lagging share; it drops the stored blocks at the end. c.mu must be
// held.
func (c *crowd) scanBack(m string, n int, ok func(cid.Cid) bool, out *[]cid.Cid) {
	share := c.shares[m]
	for len(share) > 0 && !c.pending[share[len(share)-1]] {
		share = share[:len(share)-1]
	}
	c.shares[m] = share
	for i := len(share) - 1; i >= 0 && len(*out) < n; i-- {
		if b := share[i]; c.pending[b] && !c.askedLocked(b) && ok(b) {
			*out = append(*out, b)
		}
	}
}

// laggingLocked returns the live members whose shares (since the last
// rebuild of shares) lag the others' here, or once did, as
// swarm.laggingLocked judges. c.mu must be held.
func (c *crowd) laggingLocked() map[string]bool {
	markLagging(shareProgress{c.live, c.size, c.left, c.each}, c.f.thresholds.LagFactor, c.lagging, func(m string, came, median float64) {
		c.f.log.Debug("crowd member lags: adopting its share", "member", m, "came", came, "others_median", median)
	})
	return c.lagging
}

// adopter returns the live member that fetches b, of lagging member m's
// share, from the origin: the one that ranks it highest among those not
// lagging.
func (c *crowd) adopter(b cid.Cid, m string, lagging map[string]bool) string {
	return c.owner(b, c.live, func(o string) bool { return o != m && !lagging[o] })
}

// all is the alive of owner that counts every member.
func all(string) bool { return true }

// owner returns the member among ms alive that ranks b highest, "" if
// none is.
func (c *crowd) owner(b cid.Cid, ms []string, alive func(string) bool) string {
	best, bestScore := "", uint64(0)
	for _, m := range ms {
		if !alive(m) {
			continue
		}
		if sc := rank(m, b); best == "" || sc > bestScore {
			best, bestScore = m, sc
		}
	}
	return best
}

// aliveAt returns whether a member counts as alive at now: this receiver,
// or one not dropped and not backing off after a failed request.
func (c *crowd) aliveAt(now time.Time) func(string) bool {
	return func(m string) bool {
		return m == c.self || (!c.f.isDropped(m) && !c.f.backingOff(m, now))
	}
}

// landed ends the flight of batch; got holds the blocks stored, from the
// member that sent them ("": the origin).
func (c *crowd) landed(batch []cid.Cid, got map[cid.Cid][]byte, from string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.releaseLocked(batch, from)
	for _, b := range batch {
		if _, ok := got[b]; ok && c.pending[b] {
			delete(c.pending, b)
			if c.shares != nil {
				owner := c.owner(b, c.live, all)
				c.left[owner]--
				if from != "" {
					c.lastGot[owner] = now // its share comes, as in a swarm
					c.adopted = c.adopted || owner == c.self
				}
			}
		}
	}
	if from != "" && len(got) > 0 {
		c.lastGot[from] = now
	}
	c.wakeLocked()
}

// exhaust notes that earlier member m answered an ask for this receiver's
// share with nothing: it holds no more of it.
func (c *crowd) exhaust(m string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.exhausted[m] = true
}

// wakeLocked signals a change. c.mu must be held.
func (c *crowd) wakeLocked() {
	c.signalLocked()
	if len(c.pending) == 0 {
		select {
		case <-c.done:
		default:
			close(c.done)
		}
	}
}
