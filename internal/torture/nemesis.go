package torture

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weft-mesh/weft/api"
)

// The kinds of fault the nemesis injects.
const (
	faultKill  = "kill"  // kill -9 of a daemon, restarted later
	faultPause = "pause" // SIGSTOP past the failure detector's timeout, then SIGCONT
	faultCut   = "cut"   // a site's link down, then up (namespaces)
	// faultLongCut is a cut of a disk owner's site for longer than any
	// grace the mesh keeps state in memory for (2.5 to 3 minutes; once a
	// run, in runs of 5 minutes or more): takes of its disks meet an old
	// owner that committed, pushed nowhere and collected for minutes.
	faultLongCut = "long-cut"
	faultSlow    = "slow"    // tbf on a site's link (namespaces)
	faultTake    = "take"    // weft disk take of a down or cut-off owner's disk
	faultFill    = "fill"    // a node's tmpfs home filled, then emptied (root)
	faultCorrupt = "corrupt" // bytes flipped in a stopped node's segments, then scrub
)

// maxActive bounds the faults active at once.
const maxActive = 3

// fault is one fault in force until it is healed.
type fault struct {
	kind string
	desc string
	// out: the fault takes nodes of site out of the mesh (dead, paused,
	// cut off, full); all such faults at one time are in one site.
	out   bool
	site  int
	node  *Node // the node it hits; nil for a site or a disk
	until time.Time
	heal  func() error
}

// nemesis injects faults at random, seeded, under one rule: every fault
// that takes nodes out (kill, pause, cut, fill) is in the same site as
// every other one in force, and at most maxActive are in force. Placement
// puts the R copies of a block on distinct sites while there are as many
// sites as copies, so at least R-1 copies of every block stay reachable;
// sync disks keep writing, and nothing is lost while one copy lives.
// Corruption hits a stopped node that owns no disk and had none taken
// from it, only when no other fault takes nodes out, so the blocks it
// damages have other copies (its own were pushed to it by owners, which
// keep theirs); the node is scrubbed (repaired) at once.
type nemesis struct {
	rng    *rand.Rand
	mesh   *Mesh
	kinds  []string
	logf   func(string, ...any)
	counts map[string]int
	active []*fault
	// takenFrom are the nodes a disk was taken from. Each may keep a
	// fenced replica whose blocks it alone holds until heal copies them,
	// so corrupt spares them as it spares owners.
	takenFrom map[*Node]bool
}

// run injects and heals faults until ctx ends; the faults still in force
// are healed by healAll.
func (n *nemesis) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(1000+n.rng.IntN(2000)) * time.Millisecond):
		}
		n.healDue(time.Now())
		if len(n.active) >= maxActive {
			continue
		}
		kind := n.kinds[n.rng.IntN(len(n.kinds))]
		f, err := n.inject(ctx, kind)
		switch {
		case err != nil:
			n.logf("nemesis: %s failed: %v", kind, err)
		case f == nil:
			// Nothing the rule allows for this kind now.
		default:
			n.counts[kind]++
			n.logf("nemesis: %s", f.desc)
			if f.heal != nil {
				n.active = append(n.active, f)
			}
		}
	}
}

// healDue heals the faults whose time is up.
func (n *nemesis) healDue(now time.Time) {
	kept := n.active[:0]
	for _, f := range n.active {
		if now.Before(f.until) {
			kept = append(kept, f)
			continue
		}
		n.healOne(f)
	}
	n.active = kept
}

func (n *nemesis) healOne(f *fault) {
	if err := f.heal(); err != nil {
		n.logf("nemesis: heal %s: %v", f.desc, err)
		return
	}
	n.logf("nemesis: healed %s", f.desc)
}

// healAll heals every fault in force.
func (n *nemesis) healAll() {
	for _, f := range n.active {
		n.healOne(f)
	}
	n.active = nil
}

// outSite is the site of the faults in force that take nodes out, or -1.
func (n *nemesis) outSite() int {
	for _, f := range n.active {
		if f.out {
			return f.site
		}
	}
	return -1
}

// inForce reports whether a fault of kind is in force on site and, with
// nd not nil, on node nd.
func (n *nemesis) inForce(kind string, site int, nd *Node) bool {
	for _, f := range n.active {
		if f.kind == kind && f.site == site && (nd == nil || f.node == nd) {
			return true
		}
	}
	return false
}

// candidates are the running nodes of the sites the rule allows.
func (n *nemesis) candidates() []*Node {
	out := n.outSite()
	var c []*Node
	for _, nd := range n.mesh.nodes {
		if nd.State() == nodeUp && (out < 0 || nd.Site == out) {
			c = append(c, nd)
		}
	}
	return c
}

func (n *nemesis) pick(nodes []*Node) *Node {
	if len(nodes) == 0 {
		return nil
	}
	return nodes[n.rng.IntN(len(nodes))]
}

// span is a random duration in [lo, hi) seconds.
func (n *nemesis) span(lo, hi int) time.Duration {
	return time.Duration(lo*1000+n.rng.IntN((hi-lo)*1000)) * time.Millisecond
}

// inject tries a fault of kind; it returns nil, nil when the rule allows
// none now.
func (n *nemesis) inject(ctx context.Context, kind string) (*fault, error) {
	m := n.mesh
	switch kind {
	case faultKill:
		nd := n.pick(n.candidates())
		if nd == nil {
			return nil, nil
		}
		if err := nd.signal(syscall.SIGKILL); err != nil {
			return nil, err
		}
		d := n.span(2, 8)
		return &fault{kind: kind, out: true, site: nd.Site, until: time.Now().Add(d),
			desc: fmt.Sprintf("kill -9 %s (site %d) for %v", nd.Name, nd.Site, d.Round(time.Millisecond)),
			heal: func() error { return nd.start(context.Background(), m.bin, daemonArgs) }}, nil
	case faultPause:
		nd := n.pick(n.candidates())
		if nd == nil {
			return nil, nil
		}
		if err := nd.signal(syscall.SIGSTOP); err != nil {
			return nil, err
		}
		d := n.span(5, 9) // the detector declares it dead after about 3 s
		return &fault{kind: kind, out: true, site: nd.Site, until: time.Now().Add(d),
			desc: fmt.Sprintf("SIGSTOP %s (site %d) for %v", nd.Name, nd.Site, d.Round(time.Millisecond)),
			heal: func() error { return nd.signal(syscall.SIGCONT) }}, nil
	case faultCut:
		s := n.rng.IntN(len(m.sites.ips))
		if o := n.outSite(); o >= 0 && o != s || n.inForce(faultCut, s, nil) {
			return nil, nil
		}
		if err := m.sites.cut(s); err != nil {
			return nil, err
		}
		d := n.span(4, 10)
		return &fault{kind: kind, out: true, site: s, until: time.Now().Add(d),
			desc: fmt.Sprintf("cut site %d off for %v", s, d.Round(time.Millisecond)),
			heal: func() error { return m.sites.rejoin(s) }}, nil
	case faultLongCut:
		return n.longCut(ctx)
	case faultSlow:
		s := n.rng.IntN(len(m.sites.ips))
		for _, f := range n.active {
			if f.kind == faultSlow {
				return nil, nil
			}
		}
		mbit := 1 + n.rng.IntN(4)
		if err := m.sites.slow(s, mbit); err != nil {
			return nil, err
		}
		d := n.span(4, 10)
		return &fault{kind: kind, site: s, until: time.Now().Add(d),
			desc: fmt.Sprintf("slow site %d to %d Mbit/s for %v", s, mbit, d.Round(time.Millisecond)),
			heal: func() error { return m.sites.unslow(s) }}, nil
	case faultFill:
		var free []*Node
		for _, nd := range n.candidates() {
			if !n.inForce(faultFill, nd.Site, nd) {
				free = append(free, nd)
			}
		}
		nd := n.pick(free)
		if nd == nil {
			return nil, nil
		}
		path := filepath.Join(filepath.Dir(nd.Home), "fill")
		if err := fillFS(path); err != nil {
			return nil, err
		}
		d := n.span(3, 7)
		return &fault{kind: kind, out: true, site: nd.Site, node: nd, until: time.Now().Add(d),
			desc: fmt.Sprintf("fill %s's file system (site %d) for %v", nd.Name, nd.Site, d.Round(time.Millisecond)),
			heal: func() error { return os.Remove(path) }}, nil
	case faultTake:
		return n.take(ctx)
	case faultCorrupt:
		return n.corrupt(ctx)
	}
	return nil, fmt.Errorf("unknown fault %q", kind)
}

// longCut cuts the site of a random disk's owner off for 150 to 180 s,
// once a run, when the rule allows it. It counts as a long cut and is a
// cut to every other rule (takes of its disks, one cut per site).
func (n *nemesis) longCut(ctx context.Context) (*fault, error) {
	m := n.mesh
	if n.counts[faultLongCut] > 0 {
		return nil, nil
	}
	o := m.owner(ctx, Disks[n.rng.IntN(len(Disks))].Name)
	if o == nil {
		return nil, nil
	}
	s := o.Site
	if out := n.outSite(); out >= 0 && out != s || n.inForce(faultCut, s, nil) {
		return nil, nil
	}
	if err := m.sites.cut(s); err != nil {
		return nil, err
	}
	d := n.span(150, 180)
	return &fault{kind: faultCut, out: true, site: s, until: time.Now().Add(d),
		desc: fmt.Sprintf("long cut: site %d (owner %s) off for %v", s, o.Name, d.Round(time.Millisecond)),
		heal: func() error { return m.sites.rejoin(s) }}, nil
}

// take takes a disk whose owner is down or cut off over on a running node
// of another site.
func (n *nemesis) take(ctx context.Context) (*fault, error) {
	m := n.mesh
	down := make(map[*Node]bool)
	for _, f := range n.active {
		if f.kind == faultCut {
			for _, nd := range m.siteNodes(f.site) {
				down[nd] = true
			}
		}
	}
	for _, nd := range m.nodes {
		if nd.State() != nodeUp {
			down[nd] = true
		}
	}
	for _, i := range n.rng.Perm(len(Disks)) {
		d := Disks[i]
		o := m.owner(ctx, d.Name)
		if o == nil || !down[o] {
			continue
		}
		var takers []*Node
		for _, nd := range m.nodes {
			if nd.Site != o.Site && !down[nd] {
				takers = append(takers, nd)
			}
		}
		t := n.pick(takers)
		if t == nil {
			return nil, nil
		}
		force := o.State() != nodeKilled
		n.takenFrom[o] = true // before the call: one that times out may still take it
		info, err := callWithin(ctx, t, slowCallTimeout, func(c *api.Client, ctx context.Context) (api.DiskInfo, error) { return c.Take(ctx, d.Name, force) })
		if err != nil {
			return nil, fmt.Errorf("take %s from %s on %s (force %v): %w", d.Name, o.Name, t.Name, force, err)
		}
		return &fault{kind: faultTake, desc: fmt.Sprintf("take %s from %s (%s) on %s: epoch %d", d.Name, o.Name,
			map[bool]string{true: "alive, forced", false: "dead"}[force], t.Name, info.Epoch)}, nil
	}
	return nil, nil
}

// corruptFlips is how many bytes a corrupt fault flips.
const corruptFlips = 16

// corrupt stops a node that owns no disk while no other fault takes
// nodes out, flips bytes at random in its block segments, starts it again
// and scrubs it. An owner is spared: the blocks of an async disk's last
// commits may have no other copy yet, and the async promise is the
// owner's durability alone. So is a node a disk was taken from: the
// fenced replica it keeps holds such blocks too.
func (n *nemesis) corrupt(ctx context.Context) (*fault, error) {
	if n.outSite() >= 0 {
		return nil, nil
	}
	owners := make(map[*Node]bool)
	for _, d := range Disks {
		owners[n.mesh.owner(ctx, d.Name)] = true
	}
	var spare []*Node
	for _, nd := range n.candidates() {
		if !owners[nd] && !n.takenFrom[nd] {
			spare = append(spare, nd)
		}
	}
	nd := n.pick(spare)
	if nd == nil {
		return nil, nil
	}
	if err := nd.signal(syscall.SIGKILL); err != nil {
		return nil, err
	}
	flipped, ferr := flipSegmentBytes(filepath.Join(nd.Home, "blocks", "segments"), n.rng, corruptFlips)
	if err := nd.start(context.Background(), n.mesh.bin, daemonArgs); err != nil {
		return nil, err
	}
	if ferr != nil {
		return nil, ferr
	}
	// Scrub once the node is back in the mesh: a repair fetches a good
	// copy from the other holders.
	if err := n.mesh.waitFor(ctx, nd.Name+" sees every member alive", 30*time.Second, func(ctx context.Context) (bool, string) {
		return nodeSeesAll(ctx, nd, len(n.mesh.nodes))
	}); err != nil {
		n.logf("nemesis: %v; scrubbing anyway", err)
	}
	res, err := callWithin(ctx, nd, slowCallTimeout, (*api.Client).Scrub)
	if err != nil {
		return nil, fmt.Errorf("scrub %s: %w", nd.Name, err)
	}
	repaired, dropped, firstErr := 0, 0, ""
	for _, c := range res.Corrupt {
		switch {
		case c.Repaired:
			repaired++
		case c.Dropped:
			dropped++
		case firstErr == "":
			firstErr = "; first not repaired: " + strconv.Quote(c.Error)
		}
	}
	return &fault{kind: faultCorrupt, desc: fmt.Sprintf("corrupt %s: %d bytes flipped in its segments; scrub found %d corrupt blocks, repaired %d, deleted %d as garbage%s",
		nd.Name, flipped, len(res.Corrupt), repaired, dropped, firstErr)}, nil
}

// nodeSeesAll says whether nd sees want members alive, itself included.
func nodeSeesAll(ctx context.Context, nd *Node, want int) (bool, string) {
	peers, err := call(ctx, nd, (*api.Client).Peers)
	if err != nil {
		return false, err.Error()
	}
	alive := 0
	for _, p := range peers {
		if p.State == "alive" {
			alive++
		}
	}
	return alive == want, fmt.Sprintf("%d of %d alive", alive, want)
}

// flipSegmentBytes flips up to count bytes at random offsets of the
// segment files in dir, weighting the files by size.
func flipSegmentBytes(dir string, rng *rand.Rand, count int) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	type seg struct {
		path string
		size int64
	}
	var segs []seg
	var total int64
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || info.Size() == 0 {
			continue
		}
		segs = append(segs, seg{filepath.Join(dir, e.Name()), info.Size()})
		total += info.Size()
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].path < segs[j].path })
	if total == 0 {
		return 0, nil
	}
	flipped := 0
	for range count {
		at := rng.Int64N(total)
		for _, s := range segs {
			if at >= s.size {
				at -= s.size
				continue
			}
			if err := flipByte(s.path, at); err != nil {
				return flipped, err
			}
			flipped++
			break
		}
	}
	return flipped, nil
}

func flipByte(path string, off int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		return err
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		return err
	}
	return f.Sync()
}

// fillFS takes all the free space of the file system path is on with a
// file at path, allocated a chunk at a time until the file system is full
// (what is free moves while the daemon writes).
func fillFS(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	chunk, off := int64(1<<20), int64(0)
	for {
		err := unix.Fallocate(int(f.Fd()), 0, off, chunk)
		switch {
		case errors.Is(err, unix.ENOSPC) && chunk == 4096:
			return nil
		case errors.Is(err, unix.ENOSPC):
			chunk /= 2
		case err != nil:
			return fmt.Errorf("fill %s: %w", path, err)
		default:
			off += chunk
		}
	}
}
