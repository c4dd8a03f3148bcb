package datapath

const (
	// In the tail (tailAsks) a receiver keeps swarmTailRequests requests
	// to the origin in flight and takes at most 1/swarmTailPart of a share
	// from it in all, so the origin sends at most 1/swarmTailPart of a
	// copy more (bench-swarm.sh equal8: 1.02-1.03 copies with the quarter
	// asks below; 1/8 of a share took the same time at 1.05 copies once
	// the origin's uplink was shared out evenly, swarmOriginRequests).
	swarmTailRequests = 2
	swarmTailPart     = 16
	// In the tail a member is asked for 1/swarmTailAskDiv of the blocks
	// it is asked for before: fewer wait in flight to an owner whose
	// uplink is backlogged, asked of nobody else, and the origin's tail
	// requests take more of them (bench-swarm.sh equal8: last site
	// median 13.3 -> 12.9 s, 4 runs alternated; 1/8 and 1/16 the same).
	swarmTailAskDiv = 4
)

// inTail reports whether a receiver whose own share has ownLeft blocks
// missing, lacking pending blocks in all, with shares of share blocks on
// average, is in the tail.
func inTail(ownLeft, pending, share int) bool { return ownLeft == 0 && pending <= share }

// tailAsks counts what a swarm or crowd receiver asks the origin for in
// the tail: once its own share is all here and it lacks at most a share's
// worth, it also asks the origin for the last blocks of the share with
// the most missing (their owner got them last), none in flight to their
// owner. By then the origin has handed out about every block once and its
// uplink falls idle, while the owners relay their last blocks over
// uplinks still full: in an equal8 push (bench-swarm.sh, every link's
// bytes sampled each 0.1 s) the origin's link sat idle for the last 1.4 s
// while four sites' uplinks ran full and the other four idle. Blocks in
// flight to their owner are left to it: taken too (the owner then sends
// them twice over its full uplink), they gained nothing and cost
// 1.10-1.12 copies. Its owner's mu guards it.
type tailAsks struct {
	out int // requests in flight
	got int // blocks taken
}

// open reports whether a receiver in the tail (inTail's arguments) may
// ask the origin for another tail batch.
func (t *tailAsks) open(ownLeft, pending, share int) bool {
	return inTail(ownLeft, pending, share) && t.out < swarmTailRequests && t.got < max(1, share/swarmTailPart)
}

// took counts a tail request of n blocks.
func (t *tailAsks) took(n int) { t.out++; t.got += n }

// ended counts the end of a tail request.
func (t *tailAsks) ended() { t.out-- }
