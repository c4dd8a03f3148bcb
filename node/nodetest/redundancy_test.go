package nodetest_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/blockmap"
	"github.com/weft-mesh/weft/node/nodetest"
)

// redundancyDisk is a disk of a sampling scenario: created and written on
// owner, which is never killed (its store holds every block of the disk's
// roots, map nodes included, so the truth is walked there).
type redundancyDisk struct {
	name     string
	owner    *nodetest.Node
	replicas int
	sync     bool
}

// redundancyTruth knows what the sampler needs of the scenario's kill:
// which node dies, and, once it is dead, each survivor's membership mark
// taken after the kill (nil while the kill is under way or to come).
type redundancyTruth struct {
	nodes  []*nodetest.Node
	disks  map[string]redundancyDisk
	victim *nodetest.Node

	mu    sync.Mutex
	marks map[*nodetest.Node]uint64
}

// counted returns the nodes whose copies a figure read on s may count: every
// node but the victim, and the victim as long as s's redundancy account may
// not have dropped it. marks is the state taken before the figure was read
// (nil: the victim was alive, or dying, then). Called after the stores are
// read: if s has not applied the kill by then, it had not when the figure
// was read either.
func (rt *redundancyTruth) counted(s *nodetest.Node, marks map[*nodetest.Node]uint64) []*nodetest.Node {
	var out []*nodetest.Node
	for _, n := range rt.nodes {
		if n != rt.victim || marks == nil || !s.MembershipApplied(marks[s]) {
			out = append(out, n)
		}
	}
	return out
}

// under counts the blocks of root (data and map nodes, each once) that
// fewer than r of holders hold in their stores: the truth a figure must
// never undercut.
func (rt *redundancyTruth) under(ctx context.Context, disk, rootText string, r int, holders []*nodetest.Node) (int64, error) {
	root, err := cid.Parse(rootText)
	if err != nil {
		return 0, fmt.Errorf("disk %s: root %q: %w", disk, rootText, err)
	}
	var cids []cid.Cid
	seen := map[cid.Cid]bool{}
	err = blockmap.New(rt.disks[disk].owner.Core.Store, 0).Mark(ctx, root, func(c cid.Cid) bool {
		if seen[c] {
			return false
		}
		seen[c] = true
		cids = append(cids, c)
		return true
	})
	if err != nil {
		return 0, fmt.Errorf("walk %s of %s: %w", root, disk, err)
	}
	var n int64
	for _, c := range cids {
		held := 0
		for _, h := range holders {
			if h.Has(ctx, c) {
				held++
			}
		}
		if held < r {
			n++
		}
	}
	return n, nil
}

// sampleStats counts what the sampler compared.
type sampleStats struct {
	samples, checked, skipped, underTruth int
}

// sample reads one figure on s (picked by rng) and compares it with the
// stores. The figure is read first, the stores after: while blocks
// replicate, copies only appear, so a later read of the stores can only
// find more than the figure saw, never fewer. Heal drops a copy only
// outside the block's placement set once that whole set holds it, so a
// drop never takes a block below R holders; a node killed in between is
// handled by counted. A figure that is lower than the truth is a failure.
func (rt *redundancyTruth) sample(ctx context.Context, rng *rand.Rand, s *nodetest.Node, st *sampleStats) error {
	rt.mu.Lock()
	marks := rt.marks
	rt.mu.Unlock()
	type claim struct {
		what  string
		roots map[string]string // disk → root the figure is about
		under int64
	}
	var c claim
	switch kind := rng.IntN(3); kind {
	case 0: // disk info of one disk
		names := slices.Sorted(func(yield func(string) bool) {
			for name := range rt.disks {
				if !yield(name) {
					return
				}
			}
		})
		name := names[rng.IntN(len(names))]
		d, err := s.DiskInfo(ctx, name)
		if err != nil || d.Root == "" {
			st.skipped++
			return nil
		}
		c = claim{what: "disk info " + name, roots: map[string]string{name: d.Root}, under: d.UnderReplicated}
	case 1, 2: // disk ls, one disk of it; status, tied to the roots of disk ls before and after it
		ls, err := s.Disks(ctx)
		if err != nil {
			st.skipped++
			return nil
		}
		var status api.DiskInfo
		if kind == 2 {
			stat, err := s.Status(ctx)
			if err != nil {
				st.skipped++
				return nil
			}
			status.UnderReplicated = stat.UnderReplicated
			after, err := s.Disks(ctx)
			if err != nil || !sameRoots(ls, after) {
				st.skipped++
				return nil
			}
		}
		c = claim{what: "disk ls", roots: map[string]string{}}
		if kind == 2 {
			c.what = "status"
			c.under = status.UnderReplicated
		}
		var listed []api.DiskInfo
		for _, d := range ls {
			if _, ok := rt.disks[d.Name]; ok && d.Root != "" {
				listed = append(listed, d)
			}
		}
		if len(listed) == 0 {
			st.skipped++
			return nil
		}
		if kind == 1 {
			d := listed[rng.IntN(len(listed))]
			c.what += " " + d.Name
			c.roots[d.Name] = d.Root
			c.under = d.UnderReplicated
			break
		}
		for _, d := range listed {
			c.roots[d.Name] = d.Root
		}
	}
	holders := rt.counted(s, marks)
	var truth int64
	for name, root := range c.roots {
		n, err := rt.under(ctx, name, root, rt.disks[name].replicas, holders)
		if err != nil {
			return err
		}
		truth += n
	}
	st.samples++
	st.checked++
	if truth > 0 {
		st.underTruth++
	}
	if c.under < truth {
		return fmt.Errorf("%s on %s says %d blocks under-replicated, but the stores of %d nodes show %d (roots %v)",
			c.what, s.Name, c.under, len(holders), truth, c.roots)
	}
	return nil
}

// sameRoots reports whether two disk lists name the same roots.
func sameRoots(a, b []api.DiskInfo) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Root != b[i].Root {
			return false
		}
	}
	return true
}

// runSampler samples figures on random live nodes but the victim, at random
// moments (0-20 ms apart), until stop closes; it returns the first
// under-report found, or nil.
func (rt *redundancyTruth) runSampler(ctx context.Context, seed uint64, stop <-chan struct{}, st *sampleStats) error {
	rng := rand.New(rand.NewPCG(seed, 1))
	var from []*nodetest.Node
	for _, n := range rt.nodes {
		if n != rt.victim {
			from = append(from, n)
		}
	}
	for {
		select {
		case <-stop:
			return nil
		case <-time.After(time.Duration(rng.IntN(20_000)) * time.Microsecond):
		}
		if err := rt.sample(ctx, rng, from[rng.IntN(len(from))], st); err != nil {
			return err
		}
	}
}

// fill writes random data over the whole of disk on n.
func fill(t *testing.T, ctx context.Context, rng *rand.Rand, n *nodetest.Node, disk string, size int) {
	t.Helper()
	p := make([]byte, size)
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	if err := n.Write(ctx, disk, p, 0); err != nil {
		t.Fatal(err)
	}
}

// TestRedundancyNeverOverReported samples, at random moments while disks
// replicate and then heal after a kill, every figure of under-replicated
// blocks an operator reads (disk info, disk ls, status, whose figure the
// metrics and the dashboard's "healthy" share) on random nodes, and
// compares each with the stores of the nodes at that moment: a figure may
// count more blocks under-replicated than the stores show, never fewer.
// Five sites; async and sync disks with R=2 and R=3.
func TestRedundancyNeverOverReported(t *testing.T) {
	ctx, rng, nodes := fiveSites(t)
	a, b, c := nodes[0], nodes[1], nodes[2]
	disks := []redundancyDisk{
		{"async2", a, 2, false}, {"async3", b, 3, false}, {"sync2", c, 2, true}, {"sync3", a, 3, true},
	}
	// The victim owns nothing: the truth is walked in the owners' stores.
	victim := nodes[3+rng.IntN(2)]
	samplingScenario(t, ctx, rng, nodes, disks, victim, 8<<20)
}

// TestRedundancyNeverOverReportedTwoNodes is the case seen by hand: a disk
// with R=2 written whole on one of two nodes; then the other dies.
func TestRedundancyNeverOverReportedTwoNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*within)
	t.Cleanup(cancel)
	rng := nodetest.Rand(t)
	net := nodetest.NewNetwork(t)
	a, b := nodetest.NewNode(t, net, "node-a", "a"), nodetest.NewNode(t, net, "node-b", "b")
	awaitAlive(t, a, 2)
	awaitAlive(t, b, 2)
	samplingScenario(t, ctx, rng, []*nodetest.Node{a, b}, []redundancyDisk{{"vm", a, 2, false}}, b, 16<<20)
}

// samplingScenario creates disks of size, writes them whole and commits
// (async) or flushes (sync) twice while a sampler runs, waits until they
// are placed, kills victim and waits until heal restores R where enough
// nodes are left, all the while sampling; it fails on the first
// under-report.
func samplingScenario(t *testing.T, ctx context.Context, rng *rand.Rand, nodes []*nodetest.Node, disks []redundancyDisk, victim *nodetest.Node, size int) {
	t.Helper()
	rt := &redundancyTruth{nodes: nodes, disks: map[string]redundancyDisk{}, victim: victim}
	for _, d := range disks {
		rt.disks[d.name] = d
		if _, err := d.owner.CreateDisk(ctx, d.name, int64(size), d.replicas, d.sync); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var st sampleStats
	sampled := make(chan error, 1)
	seed := rng.Uint64()
	go func() { sampled <- rt.runSampler(ctx, seed, stop, &st) }()
	failed := func() {
		t.Helper()
		select {
		case err := <-sampled:
			close(stop)
			t.Fatalf("after %d samples: %v", st.samples, err)
		default:
		}
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			if err := <-sampled; err != nil {
				t.Errorf("after %d samples: %v", st.samples, err)
			}
		}
	}()

	var infos []api.DiskInfo
	for round := range 2 {
		infos = infos[:0]
		for _, d := range disks {
			fill(t, ctx, rng, d.owner, d.name, size/(round+1))
			var info api.DiskInfo
			var err error
			if d.sync {
				if err = d.owner.Flush(ctx, d.name); err == nil {
					info, err = d.owner.DiskInfo(ctx, d.name)
				}
			} else {
				info, err = d.owner.Commit(ctx, d.name)
			}
			if err != nil {
				t.Fatal(err)
			}
			infos = append(infos, info)
			failed()
		}
	}
	for i, d := range disks {
		awaitPlaced(t, ctx, infos[i], d.replicas, d.owner, nodes)
		failed()
	}

	victim.Kill()
	marks := map[*nodetest.Node]uint64{}
	var live []*nodetest.Node
	for _, n := range nodes {
		if n != victim {
			marks[n] = n.MembershipMark()
			live = append(live, n)
		}
	}
	rt.mu.Lock()
	rt.marks = marks
	rt.mu.Unlock()
	for _, n := range live {
		awaitAlive(t, n, len(live))
	}
	for i, d := range disks {
		if d.replicas <= len(live) {
			awaitPlaced(t, ctx, infos[i], d.replicas, d.owner, live)
		} else {
			nodetest.Await(t, within, d.name+" counted under-replicated without "+victim.Name, func() string {
				info, err := d.owner.DiskInfo(ctx, d.name)
				if err != nil || info.UnderReplicated == 0 {
					return fmt.Sprintf("%+v %v", info, err)
				}
				return ""
			})
			time.Sleep(500 * time.Millisecond) // a few more samples, with the victim gone
		}
		failed()
	}
	close(stop)
	if err := <-sampled; err != nil {
		t.Fatalf("after %d samples: %v", st.samples, err)
	}
	t.Logf("%d samples compared with the stores (%d while some block lacked copies), %d skipped", st.checked, st.underTruth, st.skipped)
	if st.underTruth == 0 {
		t.Fatalf("no sample was taken while a block lacked copies: the sampler saw no replication")
	}
}
