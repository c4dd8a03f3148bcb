package transfer

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/datapath"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/volume"
)

// CrowdProtocol makes the node a pull is from the tracker of its root: the
// puller sends one crowdJoin line, later one crowdDone line once it holds
// the root, and keeps the stream open while it pulls or serves; the
// tracker answers with a crowdList line whenever the root's pullers
// change. Closing the stream leaves. Pullers of one root at once thus
// learn of each other and pull it as a crowd (datapath.Crowd): the
// origin's uplink carries about one copy, not one per puller.
const CrowdProtocol = "/weft/crowd/1.0.0"

const (
	// maxCrowd bounds the pullers a tracker lists for one root; those
	// beyond it pull on their own.
	maxCrowd = 256
	// maxCrowdRoots bounds the roots a tracker tracks at once; pullers of
	// others pull on their own.
	maxCrowdRoots = 1024
	// crowdWriteTimeout bounds sending one list to a puller: one that
	// never reads is dropped, not left listed with a goroutine pinned.
	crowdWriteTimeout = 10 * time.Second
	// maxCrowdLine bounds one line of the protocol.
	maxCrowdLine = 64 << 10
	// crowdJoinTimeout bounds joining a crowd: a tracker that does not
	// answer in time (a node from before crowds) leaves the pull alone.
	crowdJoinTimeout = 3 * time.Second
	// crowdLinger bounds how long a puller that holds the root stays in
	// the crowd, serving its share, while others still pull.
	crowdLinger = 2 * time.Minute
)

// crowdJoin is a puller's first line: the root it pulls.
type crowdJoin struct {
	Root string `json:"root"`
}

// crowdDone is a puller's second line: it holds the root now.
type crowdDone struct {
	Done bool `json:"done"`
}

// crowdList is the tracker's line: the pullers of the root in the order
// they joined, and those among them that hold it all.
type crowdList struct {
	Members []string `json:"members"`
	Done    []string `json:"done"`
}

// crowdTracker keeps, for each root pulled from this node now, who pulls
// it. Safe for concurrent use.
type crowdTracker struct {
	mu    sync.Mutex
	roots map[cid.Cid][]*crowdPuller
}

// crowdPuller is one puller as the tracker sees it.
type crowdPuller struct {
	id       meshnet.PeerID
	done     bool
	notify   chan struct{} // one pending wake to send the list again
	replaced chan struct{} // closed when the same peer joins the root again
}

func newCrowdPuller(id meshnet.PeerID) *crowdPuller {
	return &crowdPuller{id: id, notify: make(chan struct{}, 1), replaced: make(chan struct{})}
}

// join adds p to root's pullers, in the place of p's peer's earlier join
// if it is listed (one entry per peer, however often it joins); false if
// the crowd is full or the tracker tracks maxCrowdRoots roots already.
func (t *crowdTracker) join(root cid.Cid, p *crowdPuller) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.roots == nil {
		t.roots = map[cid.Cid][]*crowdPuller{}
	}
	ps, tracked := t.roots[root]
	if i := slices.IndexFunc(ps, func(q *crowdPuller) bool { return q.id == p.id }); i >= 0 {
		close(ps[i].replaced)
		ps[i] = p
		t.wakeLocked(root)
		return true
	}
	if len(ps) >= maxCrowd || (!tracked && len(t.roots) >= maxCrowdRoots) {
		return false
	}
	t.roots[root] = append(ps, p)
	t.wakeLocked(root)
	return true
}

// finish marks p as holding root.
func (t *crowdTracker) finish(root cid.Cid, p *crowdPuller) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p.done = true
	t.wakeLocked(root)
}

// leave removes p from root's pullers.
func (t *crowdTracker) leave(root cid.Cid, p *crowdPuller) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.roots[root] = slices.DeleteFunc(t.roots[root], func(q *crowdPuller) bool { return q == p })
	if len(t.roots[root]) == 0 {
		delete(t.roots, root)
	}
	t.wakeLocked(root)
}

// list returns root's pullers as the tracker sends them.
func (t *crowdTracker) list(root cid.Cid) crowdList {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := crowdList{Members: []string{}, Done: []string{}}
	for _, p := range t.roots[root] {
		l.Members = append(l.Members, p.id.String())
		if p.done {
			l.Done = append(l.Done, p.id.String())
		}
	}
	return l
}

func (t *crowdTracker) wakeLocked(root cid.Cid) {
	for _, p := range t.roots[root] {
		select {
		case p.notify <- struct{}{}:
		default:
		}
	}
}

// serveCrowd tracks one puller of a root this node holds: it sends the
// root's pullers whenever they change, until the puller closes the stream
// (or joins again on another), or does not take a list within
// crowdWriteTimeout.
func (s *Service) serveCrowd(ctx context.Context, from meshnet.PeerID, st io.ReadWriteCloser) {
	expire := time.AfterFunc(crowdJoinTimeout, func() { meshnet.Abort(st) })
	r := bufio.NewReader(io.LimitReader(st, maxCrowdLine))
	root, err := readCrowdJoin(r)
	if !expire.Stop() && err == nil {
		err = errors.New("crowd join: timed out")
	}
	if err != nil {
		s.log.Debug("bad crowd join", "peer", from, "err", err)
		return
	}
	// Only pulls from this node have a crowd here: a tracker for any root
	// asked would list strangers to each other.
	if held, err := s.store.Has(ctx, root); err != nil || !held {
		s.log.Debug("crowd join for a root not held here", "peer", from, "root", root, "err", err)
		return
	}
	p := newCrowdPuller(from)
	if !s.crowds.join(root, p) {
		return // pulls on its own
	}
	defer s.crowds.leave(root, p)
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		if !readCrowdDone(r) {
			return
		}
		s.crowds.finish(root, p)
		_, _ = io.Copy(io.Discard, st) // until the puller leaves
	}()
	enc := json.NewEncoder(st)
	for {
		select {
		case <-gone:
			return
		case <-p.replaced:
			return
		case <-p.notify:
			stalled := time.AfterFunc(crowdWriteTimeout, func() { meshnet.Abort(st) })
			err := enc.Encode(s.crowds.list(root))
			if !stalled.Stop() || err != nil {
				return
			}
		}
	}
}

// readCrowdJoin reads a puller's join line and returns its root.
func readCrowdJoin(r *bufio.Reader) (cid.Cid, error) {
	var j crowdJoin
	line, err := r.ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &j)
	}
	if err != nil {
		return cid.Undef, fmt.Errorf("read crowd join: %w", err)
	}
	root, err := cid.Decode(j.Root)
	if err != nil {
		return cid.Undef, fmt.Errorf("crowd join root: %w", err)
	}
	return root, nil
}

// readCrowdDone reads a puller's second line and reports whether it says
// the puller holds the root.
func readCrowdDone(r *bufio.Reader) bool {
	var d crowdDone
	line, err := r.ReadBytes('\n')
	return err == nil && json.Unmarshal(line, &d) == nil && d.Done
}

// crowdView is a puller's view of its crowd, read from the tracker; it is
// the datapath.Crowd of the pull.
type crowdView struct {
	s    io.ReadWriteCloser
	self meshnet.PeerID

	mu      sync.Mutex
	members []string // raw peer IDs, as datapath names peers
	done    map[string]bool
	changed chan struct{}
	ended   chan struct{} // closed when the tracker's stream ends
}

// joinCrowd asks origin to track this node's pull of root; nil if it does
// not (a node from before crowds, or unreachable): the pull then runs on
// its own.
func (s *Service) joinCrowd(ctx context.Context, origin meshnet.PeerID, root cid.Cid) *crowdView {
	jctx, cancel := context.WithTimeout(ctx, crowdJoinTimeout)
	defer cancel()
	st, err := s.net.Open(jctx, origin, CrowdProtocol)
	if err != nil {
		s.log.Debug("no crowd for this pull", "origin", origin, "err", err)
		return nil
	}
	b, _ := json.Marshal(crowdJoin{Root: root.String()})
	expire := time.AfterFunc(crowdJoinTimeout, func() { meshnet.Abort(st) })
	r := bufio.NewReader(io.LimitReader(st, 1<<30))
	var first crowdList
	if _, err = st.Write(append(b, '\n')); err == nil {
		err = readCrowdList(r, &first)
	}
	if !expire.Stop() && err == nil {
		err = errors.New("crowd join: timed out")
	}
	if err != nil {
		s.log.Debug("no crowd for this pull", "origin", origin, "err", err)
		meshnet.Abort(st)
		return nil
	}
	v := &crowdView{s: st, self: s.self, changed: make(chan struct{}), ended: make(chan struct{})}
	v.set(first)
	go func() {
		defer close(v.ended)
		for {
			var l crowdList
			if readCrowdList(r, &l) != nil {
				return
			}
			v.set(l)
		}
	}()
	return v
}

// readCrowdList reads one bounded line of the tracker into l.
func readCrowdList(r *bufio.Reader, l *crowdList) error {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > maxCrowdLine {
			return fmt.Errorf("crowd list over %d bytes", maxCrowdLine)
		}
		if err == nil {
			return json.Unmarshal(line, l)
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
	}
}

// set takes l as the crowd now; members that are not peer IDs are left
// out.
func (v *crowdView) set(l crowdList) {
	var members []string
	done := map[string]bool{}
	for _, m := range l.Members {
		if id, err := meshnet.ParsePeerID(m); err == nil && !slices.Contains(members, string(id)) {
			members = append(members, string(id))
		}
	}
	for _, m := range l.Done {
		if id, err := meshnet.ParsePeerID(m); err == nil {
			done[string(id)] = true
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.members, v.done = members, done
	close(v.changed)
	v.changed = make(chan struct{})
}

// Members returns the pullers of the root in the order they joined.
func (v *crowdView) Members() ([]string, <-chan struct{}) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.members), v.changed
}

// othersPulling reports whether a puller other than this one does not
// hold the root yet, and a channel closed on the next change.
func (v *crowdView) othersPulling() (bool, <-chan struct{}) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, m := range v.members {
		if m != string(v.self) && !v.done[m] {
			return true, v.changed
		}
	}
	return false, v.changed
}

// stay keeps this node in the crowd once its pull ended: one that holds
// the root (ok) tells the tracker and serves its share while others still
// pull, at most crowdLinger; then it leaves.
func (v *crowdView) stay(ok bool) {
	defer v.s.Close()
	if !ok {
		meshnet.Abort(v.s)
		return
	}
	b, _ := json.Marshal(crowdDone{Done: true})
	if _, err := v.s.Write(append(b, '\n')); err != nil {
		return
	}
	limit := time.NewTimer(crowdLinger)
	defer limit.Stop()
	for {
		pulling, changed := v.othersPulling()
		if !pulling {
			return
		}
		select {
		case <-changed:
		case <-v.ended:
			return
		case <-limit.C:
			return
		}
	}
}

// pullInCrowd runs spec (a pull of e from sources, the origin first) in
// the origin's crowd for the root, when it keeps one, as runPull does.
func (s *Service) pullInCrowd(ctx context.Context, kind string, ref volume.Ref, e catalog.Entry, spec datapath.Spec, origin meshnet.PeerID) (*Job, *datapath.Transfer, error) {
	v := s.joinCrowd(ctx, origin, e.Root)
	if v == nil {
		return s.runPull(ctx, kind, ref, e, spec)
	}
	spec.Crowd, spec.Self = v, string(s.self)
	job, t, err := s.runPull(ctx, kind, ref, e, spec)
	if err != nil {
		v.stay(false)
		return nil, nil, err
	}
	go func() {
		<-job.done
		v.stay(State(job.Info().State) == Done)
	}()
	return job, t, nil
}
