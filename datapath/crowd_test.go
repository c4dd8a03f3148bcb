package datapath

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/exchange"
)

// testCrowd is a tracker's view shared by every receiver of a test.
type testCrowd struct {
	mu      sync.Mutex
	members []string
	changed chan struct{}
}

func newTestCrowd(members ...string) *testCrowd {
	return &testCrowd{members: members, changed: make(chan struct{})}
}

func (c *testCrowd) Members() ([]string, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.members), c.changed
}

// set replaces the members and tells the receivers.
func (c *testCrowd) set(members ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members = members
	close(c.changed)
	c.changed = make(chan struct{})
}

// startCrowd starts receivers pulling d from "src" with crowd as their
// tracker; like a pull from a site, every receiver lists the others as
// sources too.
func startCrowd(net *testNet, d disk, crowd Crowd, receivers []string, all []string) map[string]*Transfer {
	started := make(map[string]*Transfer)
	for _, r := range receivers {
		sources := []string{"src"}
		for _, m := range all {
			if m != r {
				sources = append(sources, m)
			}
		}
		spec := Spec{ID: "pull-" + r, Root: d.root, Sources: sources, Self: r, Crowd: crowd,
			BlockSize: MinBlockSize, DiskBlockSize: int64(d.blockSize)}
		started[r] = startCleaned(net, spec, r)
	}
	return started
}

// waitAll waits for every transfer to have the whole disk.
func waitAll(t *testing.T, net *testNet, d disk, started map[string]*Transfer) map[string]Progress {
	t.Helper()
	out := make(map[string]Progress)
	for r, tr := range started {
		p, err := wait(t, tr)
		if err != nil {
			t.Fatalf("receiver %s: %v", r, err)
		}
		checkComplete(t, net.stores["src"], net.stores[r], d.root)
		out[r] = p
	}
	return out
}

// TestCrowdSuperSeeds: four receivers pull one disk at once from an origin
// whose uplink is the bottleneck: told by the tracker who else pulls it,
// they share it out and the origin sends about one copy in all.
func TestCrowdSuperSeeds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net, d, members := fourReceivers(t, 10)
		got := waitAll(t, net, d, startCrowd(net, d, newTestCrowd(members...), members, members))
		if c, most := originCopies(t, d, got), 1.2+tailCopies; c > most {
			t.Fatalf("origin sent %.2f copies, want at most %.2f", c, most)
		}
	})
}

// TestCrowdAsksTheOriginTwoAtATime: a receiver of a crowd keeps two
// requests to the origin in flight, as a swarm's does.
func TestCrowdAsksTheOriginTwoAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net, d, members := fourReceivers(t, 10)
		gauge := &originGauge{Peers: net.clients["r0"]}
		net.peers = map[string]Peers{"r0": gauge}
		waitAll(t, net, d, startCrowd(net, d, newTestCrowd(members...), members, members))
		if gauge.most != 2 {
			t.Fatalf("r0 had up to %d requests to the origin in flight, want 2", gauge.most)
		}
	})
}

// TestCrowdLateJoiners: four receivers pull; once they hold a third of the
// disk four more join. The late ones get what the early ones hold from
// them, not from the origin, which still sends about one copy. Nobody
// here is silent: the patience with silent members is longer than the
// test, so that a member whose CPU is starved for seconds on a loaded
// machine does not have its share taken from the origin by another.
func TestCrowdLateJoiners(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rng := newRand(t)
		net := newTestNet(t)
		net.thresholds = Thresholds{Patience: time.Minute}
		const size = 32 << 10
		net.add("src", slowly(16<<20))
		early := []string{"r0", "r1", "r2", "r3"}
		late := []string{"r4", "r5", "r6", "r7"}
		all := append(slices.Clone(early), late...)
		for _, m := range all {
			net.add(m, nil)
		}
		d := writeDisk(t, rng, net.stores["src"], 384, size, 0) // 12 MiB: each member's MiB in flight as others join is small beside it
		crowd := newTestCrowd(early...)
		started := startCrowd(net, d, crowd, early, all)
		waitFor(t, started["r0"], func(p Progress) bool { return p.DoneBlocks >= int64(len(d.held)/3) })
		crowd.set(all...)
		maps := startCrowd(net, d, crowd, late, all)
		for r, tr := range maps {
			started[r] = tr
		}
		got := waitAll(t, net, d, started)
		if c, most := originCopies(t, d, got), 1.3+tailCopies; c > most {
			t.Fatalf("origin sent %.2f copies, want at most %.2f", c, most)
		}
	})
}

// TestCrowdMemberDies: one of four receivers goes down midway, and the
// tracker still lists it: the others pass it over, finish, and the origin
// sends again only what the dead one had not passed on.
func TestCrowdMemberDies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net, d, members := fourReceivers(t, 0)
		crowd := newTestCrowd(members...)
		started := startCrowd(net, d, crowd, members, members)
		waitFor(t, started["r3"], func(p Progress) bool { return p.DoneBlocks >= int64(len(d.held)/4) })
		net.net.Down("r3")
		started["r3"].Cancel()
		_, _ = wait(t, started["r3"])
		delete(started, "r3")
		got := waitAll(t, net, d, started)
		if c, most := originCopies(t, d, got), 1.35+tailCopies; c > most {
			t.Fatalf("origin sent %.2f copies to the three live ones, want at most %.2f", c, most)
		}
	})
}

// TestCrowdFirstAloneThenJoined: one receiver starts alone, pulling as a
// plain transfer does (large requests); once it holds a tenth of the disk
// three more join. Its large requests are cut short, so the origin still
// sends about one copy.
func TestCrowdFirstAloneThenJoined(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net, d, all := fourReceivers(t, 0)
		crowd := newTestCrowd("r0")
		started := startCrowd(net, d, crowd, all[:1], all)
		waitFor(t, started["r0"], func(p Progress) bool { return p.DoneBlocks >= int64(len(d.held)/10) })
		crowd.set(all...)
		for r, tr := range startCrowd(net, d, crowd, all[1:], all) {
			started[r] = tr
		}
		got := waitAll(t, net, d, started)
		if c, most := originCopies(t, d, got), 1.2+tailCopies; c > most {
			t.Fatalf("origin sent %.2f copies, want at most %.2f", c, most)
		}
	})
}

// muteStore accepts requests and never answers them: a listed member
// that takes a get and holds it.
type muteStore struct {
	*blockstore.Memory
	stop <-chan struct{}
}

func (s *muteStore) Get(ctx context.Context, c cid.Cid) ([]byte, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.stop:
		return nil, errors.New("test over")
	}
}

// TestCrowdMuteMember: the tracker lists a member whose store takes every
// get and never answers, after the receiver (asked for its share) or
// before it (asked first for what it held of the receiver's share). The
// blocks asked of it come back after Thresholds.MemberRequest, and the pull
// completes from the origin.
func TestCrowdMuteMember(t *testing.T) {
	for name, members := range map[string][]string{"after": {"r0", "mute"}, "before": {"mute", "r0"}} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				rng := newRand(t)
				net := newTestNet(t)
				const size = 32 << 10
				net.add("src", nil)
				net.add("r0", nil)
				stop := make(chan struct{})
				t.Cleanup(func() { close(stop) })
				net.add("mute", func(m *blockstore.Memory) exchange.Store { return &muteStore{Memory: m, stop: stop} })
				d := writeDisk(t, rng, net.stores["src"], 64, size, 0)
				waitAll(t, net, d, startCrowd(net, d, newTestCrowd(members...), []string{"r0"}, members))
			})
		})
	}
}

// badWatch records the blocks a peer sent with bad bytes and counts the
// requests that ask it for one of them again.
type badWatch struct {
	Peers
	liar  string
	mu    sync.Mutex
	bad   map[cid.Cid]bool
	again int
}

func (p *badWatch) GetEach(ctx context.Context, peer string, cids []cid.Cid, fn func([]blockstore.Block) error) error {
	if peer != p.liar {
		return p.Peers.GetEach(ctx, peer, cids, fn)
	}
	p.mu.Lock()
	if slices.ContainsFunc(cids, func(c cid.Cid) bool { return p.bad[c] }) {
		p.again++
	}
	p.mu.Unlock()
	err := p.Peers.GetEach(ctx, peer, cids, fn)
	if bad := (*exchange.BadBlockError)(nil); errors.As(err, &bad) {
		p.mu.Lock()
		p.bad[bad.CID] = true
		p.mu.Unlock()
	}
	return err
}

// TestCrowdBadMemberNotAskedAgain: a member sends bad bytes for every
// block it serves. A block it sent bad is not asked of it again (it is
// taken from the origin), so a member below maxBadBlocks is not asked the
// same block over and over.
func TestCrowdBadMemberNotAskedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rng := newRand(t)
		net := newTestNet(t)
		const size = 32 << 10
		net.add("src", slowly(2<<20))
		net.add("r0", nil)
		net.add("r1", func(m *blockstore.Memory) exchange.Store {
			return &lyingStore{Memory: m, bad: func(cid.Cid) bool { return true }}
		})
		d := writeDisk(t, rng, net.stores["src"], 256, size, 0)
		members := []string{"r0", "r1"}
		crowd := newTestCrowd(members...)
		started := startCrowd(net, d, crowd, members[1:], members)
		watch := &badWatch{Peers: net.clients["r0"], liar: "r1", bad: map[cid.Cid]bool{}}
		spec := Spec{ID: "pull-r0", Root: d.root, Sources: []string{"src", "r1"}, Self: "r0", Crowd: crowd,
			BlockSize: MinBlockSize, DiskBlockSize: size}
		started["r0"] = Start(context.Background(), spec, watch, net.stores["r0"], nil)
		waitAll(t, net, d, started)
		watch.mu.Lock()
		defer watch.mu.Unlock()
		if len(watch.bad) == 0 {
			t.Fatal("r1 sent no bad block: the test proves nothing")
		}
		if watch.again > 0 {
			t.Fatalf("asked r1 %d times for blocks it had sent with bad bytes", watch.again)
		}
	})
}

// TestCrowdSlowMember: four receivers pull at once, one of which sends at
// a 128th of the origin's rate and keeps sending (never silent for
// Thresholds.Patience, a minute here). The others adopt its share as a swarm
// does, fetching much of it from the origin and each other instead of
// waiting for it, as TestSwarmSlowMember.
func TestCrowdSlowMember(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rng := newRand(t)
		net := newTestNet(t)
		net.thresholds = slowMemberThresholds
		const size = 32 << 10
		net.add("src", slowly(16<<20))
		members := []string{"r0", "r1", "r2", "slow"}
		for _, m := range members[:3] {
			net.add(m, nil)
		}
		net.add("slow", limited(slowMemberRate, size))
		d := writeDisk(t, rng, net.stores["src"], 1024, size, 0)
		got := waitAll(t, net, d, startCrowd(net, d, newTestCrowd(members...), members, members))
		if c, most := originCopies(t, d, got), 1.5+tailCopies; c > most {
			t.Fatalf("origin sent %.2f copies, want at most %.2f", c, most)
		}
		share := int64(len(d.held)*size) / int64(len(members))
		for _, r := range members[:3] {
			if fromSlow := got[r].BytesFrom["slow"]; fromSlow > share*7/8 {
				t.Errorf("%s got %d bytes of the slow member's %d from it, want much from the others", r, fromSlow, share)
			}
		}
	})
}

// TestCrowdEndgameDrainsABackloggedShare is
// TestSwarmEndgameDrainsABackloggedShare for pullers in a crowd: r2 gets
// the rest of slow r1's share from r0, which holds the whole disk, once
// r0's share is done at r2.
func TestCrowdEndgameDrainsABackloggedShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net, d, members := backloggedShare(t)
		var share int64 // r1's: the data blocks it ranks highest
		for c, err := range net.stores["src"].All(context.Background()) {
			if err != nil {
				t.Fatalf("list the origin's blocks: %v", err)
			}
			if c.Prefix().Codec == blockstore.CodecRaw && new(crowd).owner(c, members, all) == "r1" {
				share += int64(d.blockSize)
			}
		}
		if share >= swarmLagBytes || share < 16*int64(d.blockSize) {
			t.Fatalf("r1's share of %d bytes: want one it holds a fair part of, never adopted for lagging", share)
		}
		got := waitAll(t, net, d, startCrowd(net, d, newTestCrowd(members...), []string{"r1", "r2"}, members))
		checkDrainedByR0(t, got["r2"], share)
	})
}

// TestCrowdHedgesAStalledOwner is TestSwarmHedgesAStalledOwner for
// pullers in a crowd: r1's answers to r0 stall for 5 s, and r0 asks the
// others for r1's share meanwhile.
func TestCrowdHedgesAStalledOwner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stall := 5 * time.Second
		net, d, members := stalledOwner(t, stall)
		got := waitAll(t, net, d, startCrowd(net, d, newTestCrowd(members...), members, members))
		checkHedged(t, d, members, got, stall, tailCopies)
	})
}

// TestCrowdShareRelayedIsNotSilent is TestSwarmShareRelayedIsNotSilent for
// pulls at once: r1 sends r0 nothing for longer than Patience while its
// share reaches r0 through r2, so r0 does not take it from the origin.
func TestCrowdShareRelayedIsNotSilent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		members := []string{"r0", "r1", "r2", "r3"}
		missing, ordinals := numberedBlocks(64)
		spec := Spec{Sources: []string{"src"}, Crowd: newTestCrowd(members...), Self: "r0", BlockSize: 1 << 20, DiskBlockSize: 64 << 10}
		f := bareFetcher(spec)
		c := newCrowd(f, spec, missing, ordinals)
		c.aloneCtx, c.aloneCancel = context.WithCancel(t.Context())
		c.follow(members)
		if batch, _, _, _ := c.takeOwn(true, false); len(batch) == 0 {
			t.Fatal("r0 takes none of its share from the origin")
		}
		ownerOf := func(b cid.Cid) string { return c.owner(b, members, all) }
		stored := func(bs ...cid.Cid) map[cid.Cid][]byte {
			got := map[cid.Cid][]byte{}
			for _, b := range bs {
				got[b] = nil
			}
			return got
		}
		var r1s []cid.Cid
		for _, b := range missing {
			switch ownerOf(b) {
			case "r0", "r3": // here already
				c.landed([]cid.Cid{b}, stored(b), "")
			case "r1":
				r1s = append(r1s, b)
			}
		}
		patience := f.thresholds.Patience
		for _, b := range r1s[:len(r1s)-2] {
			time.Sleep(patience / 3)
			c.landed([]cid.Cid{b}, stored(b), "r2") // r2 sends too
		}
		time.Sleep(patience * 2 / 3)
		if batch, _, _, _ := c.takeOwn(true, false); len(batch) > 0 {
			t.Fatalf("r0 takes %d blocks from the origin (first of %s's share) while r1's share comes through r2", len(batch), ownerOf(batch[0]))
		}
	})
}

// crowdOfFour is a crowd of r0..r3 as seen by r0, with about perShare
// blocks of 64 KiB in each member's share, all missing, and each member's
// share.
func crowdOfFour(t *testing.T, perShare int) (*crowd, map[string][]cid.Cid) {
	t.Helper()
	members := []string{"r0", "r1", "r2", "r3"}
	missing, ordinals := numberedBlocks(len(members) * perShare)
	spec := Spec{Sources: []string{"src"}, Crowd: newTestCrowd(members...), Self: "r0", BlockSize: 1 << 20, DiskBlockSize: 64 << 10}
	c := newCrowd(bareFetcher(spec), spec, missing, ordinals)
	c.aloneCtx, c.aloneCancel = context.WithCancel(t.Context())
	c.follow(members)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sharesLocked(c.aliveAt(time.Now()))
	shares := map[string][]cid.Cid{}
	for m, share := range c.shares {
		shares[m] = slices.Clone(share)
	}
	return c, shares
}

// TestCrowdTailAsksTheOriginForTheLastBlocks is
// TestSwarmTailAsksTheOriginForTheLastBlocks for pulls at once: with its
// own share here and a share's worth missing, r0 asks the origin for the
// last blocks of r3's share (the most missing), not those asked of r3,
// 1/swarmTailPart of a share in all, and asks r3 for fewer at a time.
func TestCrowdTailAsksTheOriginForTheLastBlocks(t *testing.T) {
	members := []string{"r0", "r1", "r2", "r3"}
	c, shares := crowdOfFour(t, 64)
	share := len(c.pending) / len(members)
	// Missing: a share's worth and one, r3's most (none lagging).
	keep := map[string]int{"r0": 0, "r1": share/4 + 1, "r2": share / 4, "r3": share - 2*(share/4)}
	for m, n := range keep {
		c.landed(shares[m][:len(shares[m])-n], stored(shares[m][:len(shares[m])-n]), m)
	}
	if batch := c.takeTail(); len(batch) > 0 {
		t.Fatalf("r0 takes %d blocks from the origin while it lacks more than a share", len(batch))
	}
	r1 := shares["r1"]
	c.landed(r1[len(r1)-1:], stored(r1[len(r1)-1:]), "r1") // a share's worth missing: the tail
	inFlight, _, _ := c.claimFrom("r3")
	if want := c.peerBatch / swarmTailAskDiv; len(inFlight) != want {
		t.Fatalf("r0 asks r3 for %d blocks in the tail, want %d", len(inFlight), want)
	}
	var taken []cid.Cid
	for range share {
		batch := c.takeTail()
		if len(batch) == 0 {
			break
		}
		taken = append(taken, batch...)
		c.landed(batch, stored(batch), "")
		c.tailEnded()
	}
	if want := share / swarmTailPart; len(taken) != want {
		t.Fatalf("r0 took %d blocks from the origin in the tail, want %d (1/%d of a share)", len(taken), want, swarmTailPart)
	}
	r3 := shares["r3"]
	for i, b := range taken {
		if want := r3[len(r3)-1-i]; b != want || slices.Contains(inFlight, b) {
			t.Fatalf("tail block %d is %v, want r3's %d-th from the end, not in flight to r3", i, b, i+1)
		}
	}
}

// TestCrowdAdoptsAtOnce is TestSwarmAdoptsAtOnce and
// TestSwarmProbesForItsAdoptedShare for pulls at once: r3's share lags
// while half of r0's own is missing. r0's origin requests take its own
// blocks and those of r3's it adopted in turn; an ask of r1 carries blocks
// r1 adopted beside r1's own and one block of r0's share that r1 would
// adopt, and half an ask of those once one came back.
func TestCrowdAdoptsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, shares := crowdOfFour(t, 128)
		for _, m := range []string{"r1", "r2"} {
			here := shares[m][:len(shares[m])*3/4]
			c.landed(here, stored(here), m)
		}
		half := shares["r0"][:len(shares["r0"])/2]
		c.landed(half, stored(half), "")
		c.mu.Lock()
		lagging := maps.Clone(c.laggingLocked())
		c.mu.Unlock()
		if !lagging["r3"] || len(lagging) != 1 {
			t.Fatalf("lagging members %v, want r3 alone", lagging)
		}
		of := func(who string, bs []cid.Cid) (own, adopted, probes int) {
			for _, b := range bs {
				switch {
				case slices.Contains(shares[who], b):
					own++
				case slices.Contains(shares["r3"], b) && c.adopter(b, "r3", lagging) == who:
					adopted++
				case slices.Contains(shares["r0"], b) && c.adopter(b, "r0", lagging) == who:
					probes++
				default:
					t.Fatalf("%v is neither %s's, adopted by it, nor r0's that it would adopt", b, who)
				}
			}
			return own, adopted, probes
		}
		var taken []cid.Cid
		for range 4 {
			batch, _, _, _ := c.takeOwn(true, false)
			taken = append(taken, batch...)
		}
		if own, adopted, _ := of("r0", taken); own == 0 || adopted == 0 {
			t.Fatalf("r0's origin requests took %d of its own blocks and %d adopted ones, want both", own, adopted)
		}
		ask, _, _ := c.claimFrom("r1")
		if own, adopted, probes := of("r1", ask); own == 0 || adopted == 0 || probes != 1 {
			t.Fatalf("r0 asks r1 for %d of its blocks, %d it adopted and %d of r0's share, want some, some and 1", own, adopted, probes)
		}
		var probe []cid.Cid
		for _, b := range ask {
			if slices.Contains(shares["r0"], b) {
				probe = append(probe, b)
			}
		}
		c.landed(ask, stored(probe), "r1") // r1 had adopted it
		ask, _, _ = c.claimFrom("r1")
		if _, _, probes := of("r1", ask); probes != c.peerBatch/2 {
			t.Fatalf("r0 asks r1 for %d blocks of its own share once one came, want %d", probes, c.peerBatch/2)
		}
	})
}

// TestCrowdMemberAnsweringIsNotSilent is
// TestSwarmMemberAnsweringIsNotSilent for pulls at once: nothing of r1's
// share has come for longer than Patience, but a request to r1 is out, so
// r0 does not take r1's share from the origin until it has ended.
func TestCrowdMemberAnsweringIsNotSilent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, shares := crowdOfFour(t, 16)
		for _, m := range []string{"r0", "r2", "r3"} {
			c.landed(shares[m], stored(shares[m]), "") // all but r1's share here already
		}
		ask, _, _ := c.claimFrom("r1")
		if len(ask) == 0 {
			t.Fatal("r0 asks r1 for nothing")
		}
		time.Sleep(c.f.thresholds.Patience * 3 / 2)
		if batch, _, _, _ := c.takeOwn(true, false); len(batch) > 0 {
			t.Fatalf("r0 takes %d blocks of r1's share from the origin while r1 answers", len(batch))
		}
		c.landed(ask, nil, "r1") // its answer held none of them
		if batch, _, _, _ := c.takeOwn(true, false); len(batch) == 0 {
			t.Fatal("r0 takes nothing from the origin once r1 is silent and no request to it is out")
		}
	})
}
