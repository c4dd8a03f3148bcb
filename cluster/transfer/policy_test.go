package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/volume"
)

func testCID(t testing.TB, n int) cid.Cid {
	t.Helper()
	c, err := cid.V1Builder{Codec: cid.DagCBOR, MhType: mh.SHA2_256}.Sum(fmt.Appendf(nil, "root %d", n))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCheckPolicy(t *testing.T) {
	owner, puller, other := meshnet.PeerID("owner"), meshnet.PeerID("puller"), meshnet.PeerID("other")
	members := []meshnet.Member{
		{ID: owner, Site: "madrid", State: meshnet.StateAlive},
		{ID: puller, Site: "archive", State: meshnet.StateAlive},
		{ID: other, Site: "berlin", State: meshnet.StateDead}, // a site whose only node is down is still a site
	}
	disk := catalog.Entry{Key: catalog.DiskKey("vm"), Owner: owner.String()}
	// owned answers as the cluster does: nil for the owner, else an error
	// that names it.
	errNotOwner := errors.New("not the owner")
	owned := func(self string) error {
		if self != disk.Owner {
			return errNotOwner
		}
		return nil
	}
	push := func(site string, every time.Duration, keep int) api.ReplicateRequest {
		return api.ReplicateRequest{Disk: "vm", Site: site, Every: every, Keep: keep}
	}
	for _, tc := range []struct {
		name       string
		req        api.ReplicateRequest
		self, site string
		want       error // nil: accepted
	}{
		{"push to a live site", push("archive", time.Second, 1), owner.String(), "madrid", nil},
		{"push to a dead site", push("berlin", 0, 0), owner.String(), "madrid", nil},
		{"unknown site", push("paris", 0, 0), owner.String(), "madrid", volume.ErrNotFound},
		{"own site", push("madrid", 0, 0), owner.String(), "madrid", volume.ErrInvalid},
		{"not the owner", push("archive", 0, 0), other.String(), "berlin", errNotOwner},
		{"every below the minimum", push("archive", time.Millisecond, 0), owner.String(), "madrid", volume.ErrInvalid},
		{"negative keep", push("archive", 0, -1), owner.String(), "madrid", volume.ErrInvalid},
		{"pull", api.ReplicateRequest{Disk: "vm", Pull: true}, puller.String(), "archive", nil},
		{"pull on the owner", api.ReplicateRequest{Disk: "vm", Pull: true}, owner.String(), "madrid", volume.ErrInvalid},
		{"pull to another site", api.ReplicateRequest{Disk: "vm", Pull: true, Site: "berlin"}, puller.String(), "archive", volume.ErrInvalid},
		{"pull at the owner's site", api.ReplicateRequest{Disk: "vm", Pull: true}, meshnet.PeerID("neighbour").String(), "madrid", volume.ErrInvalid},
	} {
		p, err := checkPolicy(tc.req, disk, tc.self, tc.site, members, owned(tc.self))
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
		if err == nil && (p.Keep < 1 || p.Every < api.MinReplicateEvery) {
			t.Errorf("%s: got keep %d, every %v, want defaults for zero", tc.name, p.Keep, p.Every)
		}
	}
	p, err := checkPolicy(api.ReplicateRequest{Disk: "vm", Pull: true}, disk, puller.String(), "archive", members, owned(puller.String()))
	if err != nil || p.Mode != api.ModePull || p.Site != "archive" || p.Puller != puller.String() || policyKey(p) != catalog.ReplicatePullKey("vm", "archive") {
		t.Errorf("pull: got %+v, %v, want a pull policy to archive under its own key", p, err)
	}
	if _, err := checkPolicy(push("paris", 0, 0), disk, owner.String(), "madrid", members, nil); err == nil || !strings.Contains(err.Error(), "archive, berlin, madrid") {
		t.Errorf("unknown site: got %v, want the known sites named", err)
	}
}

func TestStateNames(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 15, 0, 0, time.UTC)
	for _, tc := range []struct{ site, mode, name string }{
		{"berlin", api.ModePush, "repl-berlin-20261122-101500"},
		{"berlin", api.ModePull, "repl-berlin-20261122-101500-pull"},
		{"a-b", api.ModePush, "repl-a-b-20261122-101500"},
		{"pull", api.ModePull, "repl-pull-20261122-101500-pull"},
	} {
		if got := stateName(tc.site, tc.mode, at); got != tc.name {
			t.Errorf("stateName(%s, %s): got %s, want %s", tc.site, tc.mode, got, tc.name)
		}
		site, mode, when, ok := parseStateName(tc.name)
		if !ok || site != tc.site || mode != tc.mode || !when.Equal(at) {
			t.Errorf("parseStateName(%s): got %s %s %v %v, want %s %s %v", tc.name, site, mode, when, ok, tc.site, tc.mode, at)
		}
	}
	for _, name := range []string{"repl-", "repl-20261122-101500", "pull-20261122-101500", "repl-x-2026112-1015000", "backup"} {
		if _, _, _, ok := parseStateName(name); ok {
			t.Errorf("parseStateName(%s): ok, want not a replicated state", name)
		}
	}
}

func TestSurplusStates(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	var names []string
	for i := range 5 {
		names = append(names, stateName("a", api.ModePush, at.Add(time.Duration(i)*time.Minute)))
	}
	others := []string{
		stateName("a", api.ModePull, at),   // a pull policy to the same site
		stateName("a-b", api.ModePush, at), // a site whose name starts like this one's
		"backup",
	}
	all := append(slices.Clone(others), names...)
	p := api.Policy{Disk: "vm", Site: "a", Mode: api.ModePush, Keep: 2}
	if got, want := surplusStates(p, all), names[:3]; !slices.Equal(got, want) {
		t.Errorf("never succeeded, keep 2: got %v, want %v", got, want)
	}
	p.LastReplica = names[1] // the site holds an older one: it stays, with the newest
	if got, want := surplusStates(p, all), []string{names[0], names[2], names[3]}; !slices.Equal(got, want) {
		t.Errorf("last %s, keep 2: got %v, want %v", p.LastReplica, got, want)
	}
	p.Keep = 1
	if got, want := surplusStates(p, all), []string{names[0], names[2], names[3], names[4]}; !slices.Equal(got, want) {
		t.Errorf("keep 1: got %v, want %v", got, want)
	}
}

// fakeStates is a disk's replicas in memory; each commit moves the root,
// and so does each replica taken (the real one commits the head again,
// which a VM's writes since have changed).
type fakeStates struct {
	t       *testing.T
	commits int
	reps    map[string]volume.ReplicaInfo
	created int
}

func (f *fakeStates) Commit(_ context.Context, disk string) (volume.DiskInfo, error) {
	f.commits++
	return volume.DiskInfo{Name: disk, Root: testCID(f.t, f.commits)}, nil
}

func (f *fakeStates) CreateReplica(_ context.Context, disk, name string) (volume.ReplicaInfo, error) {
	if _, ok := f.reps[name]; ok {
		return volume.ReplicaInfo{}, fmt.Errorf("replica %s: %w", name, volume.ErrExists)
	}
	f.created++
	f.commits++
	r := volume.ReplicaInfo{Disk: disk, Name: name, Root: testCID(f.t, f.commits)}
	f.reps[name] = r
	return r, nil
}

func (f *fakeStates) AddReplica(_ context.Context, r volume.ReplicaInfo, root cid.Cid) error {
	if _, ok := f.reps[r.Name]; ok {
		return fmt.Errorf("replica %s: %w", r.Name, volume.ErrExists)
	}
	r.Root = root
	f.reps[r.Name] = r
	return nil
}

func (f *fakeStates) RemoveReplica(_ context.Context, _, name string) error {
	if _, ok := f.reps[name]; !ok {
		return volume.ErrNotFound
	}
	delete(f.reps, name)
	return nil
}

func (f *fakeStates) ListReplicas(context.Context, string) ([]volume.ReplicaInfo, error) {
	var out []volume.ReplicaInfo
	for _, r := range f.reps {
		out = append(out, r)
	}
	return out, nil
}

func (f *fakeStates) names() []string {
	var out []string
	for name := range f.reps {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// runCycles runs n cycles of p, a minute apart, each after a change, with
// the site reachable or not and pushes ending in state; it returns p and
// the replicas left.
func runCycles(t *testing.T, f *fakeStates, p api.Policy, n int, reachable error, state string) api.Policy {
	t.Helper()
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC).Add(time.Duration(f.commits) * time.Minute)
	c := pushCycle{
		replicatedStates: replicatedStates{vols: f, publish: func(context.Context, ...string) error { return nil }, removeReplica: f.RemoveReplica, log: slog.New(slog.NewTextHandler(io.Discard, nil))},
		reachable:        func(string) error { return reachable },
		send: func(_ context.Context, sources, sites []string, _ api.TransferOptions) (api.TransferInfo, error) {
			if len(sources) != 1 || len(sites) != 1 {
				t.Fatalf("send %v to %v: want one replica to one site", sources, sites)
			}
			if _, ok := f.reps[strings.TrimPrefix(sources[0], p.Disk+"@")]; !ok || sites[0] != p.Site {
				t.Fatalf("send %s to %s: not a replica of the cycle", sources[0], sites[0])
			}
			return api.TransferInfo{State: state, Targets: []api.TargetProgress{{State: state, Error: "connection reset", Bytes: 100}}}, nil
		},
		now: func() time.Time { return now },
	}
	last := cid.Undef
	for range n {
		now = now.Add(time.Minute)
		p, last = c.run(context.Background(), p, last)
		c.prune(context.Background(), p)
	}
	return p
}

// TestPushCycleFailureLeavesNothing: a site that cannot receive gets no
// replica taken; a push that fails has its replica removed.
func TestPushCycleFailureLeavesNothing(t *testing.T) {
	f := &fakeStates{t: t, reps: map[string]volume.ReplicaInfo{}}
	p := runCycles(t, f, api.Policy{Disk: "vm", Site: "berlin", Mode: api.ModePush, Keep: 2}, 5, fmt.Errorf("no live member at site %q: %w", "berlin", volume.ErrNotFound), "")
	if f.created != 0 || len(f.reps) != 0 || p.LastError == "" || !p.LastSuccess.IsZero() {
		t.Fatalf("site unreachable: %d replicas taken, left %v, policy %+v; want none and an error", f.created, f.names(), p)
	}
	p = runCycles(t, f, p, 5, nil, "failed")
	if f.created != 5 || len(f.reps) != 0 || !strings.Contains(p.LastError, "connection reset") || p.Cycles != 0 {
		t.Fatalf("pushes failed: %d replicas taken, left %v, policy %+v; want 5 taken, none left", f.created, f.names(), p)
	}
}

// TestPushCycleKeepBounds: --keep bounds what a policy leaves, failed
// cycles or not, replicas left by earlier versions included; what other
// policies took stays.
func TestPushCycleKeepBounds(t *testing.T) {
	f := &fakeStates{t: t, reps: map[string]volume.ReplicaInfo{}}
	old := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 10 { // what failed cycles left before they cleaned up
		name := stateName("berlin", api.ModePush, old.Add(time.Duration(i)*time.Second))
		f.reps[name] = volume.ReplicaInfo{Name: name}
	}
	theirs := []string{stateName("berlin", api.ModePull, old), stateName("berlin-2", api.ModePush, old)}
	for _, name := range theirs {
		f.reps[name] = volume.ReplicaInfo{Name: name}
	}
	p := runCycles(t, f, api.Policy{Disk: "vm", Site: "berlin", Mode: api.ModePush, Keep: 2}, 1, errors.New("no live member"), "")
	if got := len(f.reps) - len(theirs); got != 2 {
		t.Fatalf("after a failed cycle: %d states of the policy left (%v), want 2", got, f.names())
	}
	p = runCycles(t, f, p, 4, nil, "done")
	if p.Cycles != 4 || p.LastError != "" {
		t.Fatalf("policy %+v, want 4 good cycles", p)
	}
	want := append(slices.Clone(theirs), p.LastReplica, stateName("berlin", api.ModePush, p.LastSuccess.Add(-time.Minute)))
	slices.Sort(want)
	if got := f.names(); !slices.Equal(got, want) {
		t.Fatalf("after 4 good cycles: replicas %v, want %v", got, want)
	}
}

func TestPolicyStatus(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	disk := catalog.Entry{Key: catalog.DiskKey("vm"), Root: testCID(t, 2)}
	ok := api.Policy{LastSuccess: now.Add(-time.Minute), LastSource: testCID(t, 1).String()}
	for _, tc := range []struct {
		name   string
		p      api.Policy
		found  bool
		status string
		lag    float64 // -1: none
	}{
		{"never ran", api.Policy{}, true, api.PolicyPending, -1},
		{"never succeeded", api.Policy{LastError: "no live member"}, true, api.PolicyFailing, -1},
		{"disk gone", ok, false, api.PolicyDiskGone, -1},
		{"behind", ok, true, api.PolicyOK, 60},
		{"failing behind", api.Policy{LastSuccess: ok.LastSuccess, LastSource: ok.LastSource, LastError: "x"}, true, api.PolicyFailing, 60},
		{"up to date", api.Policy{LastSuccess: ok.LastSuccess, LastSource: disk.Root.String()}, true, api.PolicyOK, 0},
	} {
		got := withStatus(tc.p, disk, tc.found, now)
		if got.Status != tc.status || (tc.lag < 0) != (got.Lag == nil) || got.Lag != nil && *got.Lag != tc.lag {
			t.Errorf("%s: got status %s, lag %v; want %s, %v", tc.name, got.Status, got.Lag, tc.status, tc.lag)
		}
	}
}

// TestPolicyRecordModes: a pull policy stored before pull policies had a
// key of their own (under the push key, no mode field) reads as a pull
// policy whose key is the pull key, where its puller moves it; a push
// record keeps its key.
func TestPolicyRecordModes(t *testing.T) {
	for _, tc := range []struct {
		name, key, json, mode, wantKey string
	}{
		{"old push", catalog.ReplicateKey("vm", "berlin"), `{"disk":"vm","site":"berlin","keep":3}`, api.ModePush, catalog.ReplicateKey("vm", "berlin")},
		{"old pull", catalog.ReplicateKey("vm", "berlin"), `{"disk":"vm","site":"berlin","puller":"12D3KooW","keep":3}`, api.ModePull, catalog.ReplicatePullKey("vm", "berlin")},
		{"pull", catalog.ReplicatePullKey("vm", "berlin"), `{"disk":"vm","site":"berlin","mode":"pull","puller":"12D3KooW"}`, api.ModePull, catalog.ReplicatePullKey("vm", "berlin")},
	} {
		p, err := decodePolicy(catalog.Entry{Key: tc.key, Policy: []byte(tc.json)})
		if err != nil || p.Mode != tc.mode || policyKey(p) != tc.wantKey {
			t.Errorf("%s: got mode %s, key %s, %v; want %s, %s", tc.name, p.Mode, policyKey(p), err, tc.mode, tc.wantKey)
		}
	}
}
