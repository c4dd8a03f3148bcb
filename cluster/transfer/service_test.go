package transfer

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/internal/clock"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/placement"
	"github.com/weft-mesh/weft/volume"
)

// loneNet is a network with no reachable peer: enough for what a
// Service does without transferring.
type loneNet struct{ self meshnet.PeerID }

func (n loneNet) Self() meshnet.PeerID { return n.self }
func (n loneNet) Open(context.Context, meshnet.PeerID, meshnet.Protocol) (io.ReadWriteCloser, error) {
	return nil, meshnet.ErrUnreachable
}
func (loneNet) Handle(meshnet.Protocol, meshnet.Handler)    {}
func (loneNet) Members() []meshnet.Member                   { return nil }
func (loneNet) OnMembershipChange(func())                   {}
func (loneNet) Broadcast([]byte)                            {}
func (loneNet) Join(context.Context, []string) (int, error) { return 0, nil }
func (loneNet) Close() error                                { return nil }

// testCatalog is the cluster layer over one catalog, a fixed membership
// and the node's volumes.
type testCatalog struct {
	cat     *catalog.Catalog
	self    meshnet.PeerID
	site    string
	members []meshnet.Member
	vols    *volume.Manager
}

func (c *testCatalog) Self() meshnet.PeerID      { return c.self }
func (c *testCatalog) Site() string              { return c.site }
func (c *testCatalog) Members() []meshnet.Member { return c.members }
func (c *testCatalog) Live() []placement.Member {
	var out []placement.Member
	for _, m := range c.members {
		if m.State == meshnet.StateAlive {
			out = append(out, placement.Member{ID: string(m.ID), Site: m.Site})
		}
	}
	return out
}
func (c *testCatalog) SitePeers(site string, _ cid.Cid) []meshnet.PeerID {
	var out []meshnet.PeerID
	for _, m := range c.members {
		if m.Site == site && m.ID != c.self && m.State == meshnet.StateAlive {
			out = append(out, m.ID)
		}
	}
	return out
}
func (c *testCatalog) CheckOwner(disk string) error {
	if e, ok := c.cat.Get(catalog.DiskKey(disk)); ok && e.Owner != c.self.String() {
		return errors.New("owned by " + e.Owner)
	}
	return nil
}
func (c *testCatalog) Entry(ref volume.Ref) (catalog.Entry, bool) {
	if ref.Replica == "" {
		return c.cat.Get(catalog.DiskKey(ref.Disk))
	}
	return c.cat.Get(catalog.ReplicaKey(ref.Disk, ref.Replica))
}
func (c *testCatalog) AwaitEntry(_ context.Context, ref volume.Ref) (catalog.Entry, bool) {
	return c.Entry(ref)
}
func (c *testCatalog) List(prefix string) []catalog.Entry       { return c.cat.List(prefix) }
func (c *testCatalog) Merge(es []catalog.Entry)                 { c.cat.Merge(es) }
func (c *testCatalog) Publish(context.Context, ...string) error { return nil }
func (c *testCatalog) PutRecord(e catalog.Entry) (catalog.Entry, error) {
	return c.cat.Put(e)
}
func (c *testCatalog) Tombstone(key string, epoch uint64) (catalog.Entry, error) {
	return c.cat.Delete(key, epoch)
}
func (c *testCatalog) RemoveReplica(ctx context.Context, disk, name string) error {
	if err := c.vols.RemoveReplica(ctx, disk, name); err != nil {
		return err
	}
	if e, ok := c.cat.Get(catalog.ReplicaKey(disk, name)); ok {
		_, err := c.cat.Delete(e.Key, e.Epoch)
		return err
	}
	return nil
}

// hookedVolumes is a volume.Manager whose Commit runs a hook first.
type hookedVolumes struct {
	*volume.Manager
	commit func(disk string) (volume.DiskInfo, error)
}

func (v hookedVolumes) Commit(_ context.Context, disk string) (volume.DiskInfo, error) {
	return v.commit(disk)
}

// newTestService returns a Service of node "self" at site madrid, in a
// mesh with a node at site archive, over real volumes, at a fake time.
func newTestService(t *testing.T, commit func(disk string) (volume.DiskInfo, error)) (*Service, *testCatalog, *volume.Manager, *clock.Fake) {
	t.Helper()
	tc, vols, clk := newTestNode(t, blockstore.NewMemory())
	var v Volumes = vols
	if commit != nil {
		v = hookedVolumes{Manager: vols, commit: commit}
	}
	store := blockstore.NewMemory()
	s, err := New(Config{Net: loneNet{tc.self}, Catalog: tc, Volumes: v, Blocks: noPeers{}, Store: store, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return s, tc, vols, clk
}

// newTestNode returns the catalog and the volumes, over store, of node
// "self" at site madrid, in a mesh with a node at site archive, at a fake
// time.
func newTestNode(t *testing.T, store blockstore.Store) (*testCatalog, *volume.Manager, *clock.Fake) {
	t.Helper()
	self := meshnet.TestID("self")
	clk := clock.NewFake(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	tc := &testCatalog{cat: catalog.New(self.String()), self: self, site: "madrid", members: []meshnet.Member{
		{ID: self, Site: "madrid", State: meshnet.StateAlive},
		{ID: meshnet.TestID("archive"), Site: "archive", State: meshnet.StateAlive},
	}}
	vcfg := volume.DefaultConfig()
	vcfg.Dir, vcfg.Store, vcfg.CommitInterval, vcfg.Now = t.TempDir(), store, 0, clk.Now
	vols, err := volume.Open(context.Background(), vcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vols.Close() })
	tc.vols = vols
	return tc, vols, clk
}

// noPeers has no blocks to give.
type noPeers struct{}

func (noPeers) Has(_ context.Context, _ string, cids []cid.Cid) ([]bool, error) {
	return make([]bool, len(cids)), nil
}
func (noPeers) GetEach(context.Context, string, []cid.Cid, func([]blockstore.Block) error) error {
	return meshnet.ErrUnreachable
}

// writtenRoots returns n roots of a disk "src" in vols, one per write.
func writtenRoots(t *testing.T, vols *volume.Manager, n int) []cid.Cid {
	t.Helper()
	ctx := context.Background()
	if _, err := vols.CreateDisk(ctx, volume.DiskSpec{Name: "src", Size: 1 << 20, BlockSize: 4096}); err != nil {
		t.Fatal(err)
	}
	h, err := vols.Head("src")
	if err != nil {
		t.Fatal(err)
	}
	var out []cid.Cid
	for i := range n {
		if _, err := h.WriteAt([]byte{byte(i + 1)}, 0); err != nil {
			t.Fatal(err)
		}
		info, err := vols.Commit(ctx, "src")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, info.Root)
	}
	return out
}

// TestKeepTellsRootsOfOneSecondApart: two pulls of different roots of one
// disk's head that end in the same second are both kept, under names of
// their own; keeping a root again keeps no second copy, and a named
// replica that exists with another root is an error, not kept.
func TestKeepTellsRootsOfOneSecondApart(t *testing.T) {
	s, _, vols, _ := newTestService(t, nil)
	ctx := context.Background()
	ref := volume.Ref{Disk: "vm"}
	roots := writtenRoots(t, vols, 3)
	first := catalog.Entry{Key: catalog.DiskKey("vm"), Root: roots[0], Size: 1 << 20, BlockSize: 4096}
	second := first
	second.Root = roots[1]
	for _, e := range []catalog.Entry{first, second, first} {
		if err := s.keep(ctx, ref, e, "pull"); err != nil {
			t.Fatalf("keep %s: %v", e.Root, err)
		}
	}
	reps, err := vols.ListReplicas(ctx, "vm")
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, r := range reps {
		kept = append(kept, r.Root.String())
	}
	slices.Sort(kept)
	want := []string{first.Root.String(), second.Root.String()}
	slices.Sort(want)
	if !slices.Equal(kept, want) {
		t.Fatalf("kept roots %v (replicas %+v), want %v: each root once", kept, reps, want)
	}
	named := volume.Ref{Disk: "vm", Replica: reps[0].Name}
	other := first
	other.Root = roots[2]
	if err := s.keep(ctx, named, other, "pull"); !errors.Is(err, volume.ErrExists) {
		t.Fatalf("keep another root under replica %s: got %v, want an error matching ErrExists", reps[0].Name, err)
	}
}

// TestCycleDoesNotBringBackARemovedPolicy: a policy removed while its
// cycle runs stays removed once the cycle ends.
func TestCycleDoesNotBringBackARemovedPolicy(t *testing.T) {
	var s *Service
	s, tc, _, _ := newTestService(t, func(disk string) (volume.DiskInfo, error) {
		if _, err := s.RemovePolicy(disk, "archive", ""); err != nil {
			t.Errorf("remove the policy during its cycle: %v", err)
		}
		return volume.DiskInfo{Name: disk}, nil // empty: nothing to send
	})
	if _, err := tc.cat.Put(catalog.Entry{Key: catalog.DiskKey("vm"), Owner: tc.self.String(), Size: 1 << 20, BlockSize: 4096}); err != nil {
		t.Fatal(err)
	}
	p, err := s.AddPolicy(api.ReplicateRequest{Disk: "vm", Site: "archive", Every: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	rec, ok := s.record(policyKey(p))
	if !ok {
		t.Fatal("policy not in the catalog after AddPolicy")
	}
	s.cycle(context.Background(), []policyRecord{{rec, p}})
	if e, ok := s.record(policyKey(p)); ok {
		t.Fatalf("policy back in the catalog after its cycle: %+v", e)
	}
	if got := s.Policies(); len(got) != 0 {
		t.Fatalf("Policies() = %+v, want none", got)
	}
}

// cycleWithHook runs one cycle of a push policy of disk "vm" to site
// archive keeping 3, whose site holds 4 replicated states, with during
// the cycle (at its commit) hook; it returns the states left.
func cycleWithHook(t *testing.T, hook func(s *Service)) (*Service, []string) {
	t.Helper()
	var s *Service
	s, tc, vols, clk := newTestService(t, func(disk string) (volume.DiskInfo, error) {
		hook(s)
		return volume.DiskInfo{Name: disk}, nil // empty: nothing to send
	})
	ctx := context.Background()
	if _, err := vols.CreateDisk(ctx, volume.DiskSpec{Name: "vm", Size: 1 << 20, BlockSize: 4096}); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if _, err := vols.CreateReplica(ctx, "vm", stateName("archive", api.ModePush, clk.Now().Add(time.Duration(i-4)*time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tc.cat.Put(catalog.Entry{Key: catalog.DiskKey("vm"), Owner: tc.self.String(), Size: 1 << 20, BlockSize: 4096}); err != nil {
		t.Fatal(err)
	}
	p, err := s.AddPolicy(api.ReplicateRequest{Disk: "vm", Site: "archive", Every: time.Minute, Keep: 3})
	if err != nil {
		t.Fatal(err)
	}
	rec, ok := s.record(policyKey(p))
	if !ok {
		t.Fatal("policy not in the catalog after AddPolicy")
	}
	s.cycle(ctx, []policyRecord{{rec, p}})
	reps, err := vols.ListReplicas(ctx, "vm")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range reps {
		names = append(names, r.Name)
	}
	return s, names
}

// TestCycleDoesNotPruneForARemovedPolicy: a policy removed while its cycle
// runs leaves every state it named (replicate rm says so), though the
// cycle began under a --keep they exceed.
func TestCycleDoesNotPruneForARemovedPolicy(t *testing.T) {
	var kept []string
	_, left := cycleWithHook(t, func(s *Service) {
		r, err := s.RemovePolicy("vm", "archive", "")
		if err != nil {
			t.Errorf("remove the policy during its cycle: %v", err)
		}
		kept = r.Kept
	})
	if len(left) != 4 {
		t.Fatalf("states left %v after the cycle of a removed policy, want all 4 (replicate rm answered %v kept)", left, kept)
	}
}

// TestCycleKeepsAPolicyChangedMeanwhile: a policy changed while its cycle
// runs keeps the new settings, prunes by the new --keep, and records the
// cycle.
func TestCycleKeepsAPolicyChangedMeanwhile(t *testing.T) {
	s, left := cycleWithHook(t, func(s *Service) {
		if _, err := s.AddPolicy(api.ReplicateRequest{Disk: "vm", Site: "archive", Every: time.Hour, Keep: 10}); err != nil {
			t.Errorf("change the policy during its cycle: %v", err)
		}
	})
	ps := s.Policies()
	if len(ps) != 1 {
		t.Fatalf("Policies() = %+v, want one", ps)
	}
	if p := ps[0]; p.Every != time.Hour || p.Keep != 10 || p.LastTry.IsZero() {
		t.Fatalf("after the cycle: every %v keep %d last try %v, want the settings changed meanwhile (1h, 10) and the cycle recorded", p.Every, p.Keep, p.LastTry)
	}
	if len(left) != 4 {
		t.Fatalf("states left %v, want all 4 (--keep 10 since the cycle began)", left)
	}
}

// handlerNet is a lone network that keeps the handlers registered on it.
type handlerNet struct {
	loneNet
	handlers map[meshnet.Protocol]meshnet.Handler
}

func (n handlerNet) Handle(p meshnet.Protocol, h meshnet.Handler) { n.handlers[p] = h }

// TestReceiveWaitsForTheVolumes: a Service built before its node's
// volumes open serves the transfer protocol at once (peers push to a node
// as soon as it is alive again), and a push that arrives before the
// volumes are attached waits for them and is then received.
func TestReceiveWaitsForTheVolumes(t *testing.T) {
	store := blockstore.NewMemory() // the blocks are here: the receive has nothing to fetch
	tc, vols, clk := newTestNode(t, store)
	hn := handlerNet{loneNet{tc.self}, map[meshnet.Protocol]meshnet.Handler{}}
	s, err := New(Config{Net: hn, Catalog: tc, Blocks: noPeers{}, Store: store, Clock: clk})
	if err != nil {
		t.Fatalf("build a Service before its volumes: %v", err)
	}
	serve := hn.handlers[Protocol]
	if serve == nil {
		t.Fatal("the transfer protocol is not served before the volumes are attached")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root := writtenRoots(t, vols, 1)[0]
	entry, err := catalog.Encode([]catalog.Entry{{Key: catalog.DiskKey("vm"), Owner: meshnet.TestID("archive").String(), Writer: meshnet.TestID("archive").String(), Epoch: 1, Version: 1, Root: root, Size: 1 << 20, BlockSize: 4096}})
	if err != nil {
		t.Fatal(err)
	}
	pusher, receiver := net.Pipe()
	defer pusher.Close()
	go serve(ctx, meshnet.TestID("archive"), receiver)
	req := receiveRequest{ID: "early", Source: "vm", Entry: entry, Sources: []string{meshnet.TestID("archive").String()}}
	if err := json.NewEncoder(pusher).Encode(req); err != nil {
		t.Fatal(err)
	}
	s.AttachVolumes(vols)
	sc := bufio.NewScanner(pusher)
	var last api.TargetProgress
	for State(last.State) == "" || State(last.State) == Running {
		if !sc.Scan() {
			t.Fatalf("stream ended after %+v: %v", last, sc.Err())
		}
		if err := json.Unmarshal(sc.Bytes(), &last); err != nil {
			t.Fatal(err)
		}
	}
	if State(last.State) != Done {
		t.Fatalf("a push that arrived while the volumes opened: %s %q, want done", last.State, last.Error)
	}
	if reps, err := vols.ListReplicas(ctx, "vm"); err != nil || len(reps) != 1 || !reps[0].Root.Equals(root) {
		t.Fatalf("kept %+v (%v), want the pushed root", reps, err)
	}
}
