package transfer

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

// TestPushCycleSendsOnceToAllSites: the push policies of one disk run as
// one cycle push the disk's state to every site that can receive in one
// swarm (one send naming each site's own replica), and each policy keeps
// its own outcome: a site that cannot receive gets no replica, a site
// whose part of the push failed loses its replica, the others succeed.
func TestPushCycleSendsOnceToAllSites(t *testing.T) {
	f := &fakeStates{t: t, reps: map[string]volume.ReplicaInfo{}}
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	var sends [][]string
	c := pushCycle{
		replicatedStates: replicatedStates{vols: f, publish: func(context.Context, ...string) error { return nil }, removeReplica: f.RemoveReplica, log: slog.New(slog.NewTextHandler(io.Discard, nil))},
		reachable: func(site string) error {
			if site == "rome" {
				return errors.New("no live member at site rome")
			}
			return nil
		},
		send: func(_ context.Context, sources, sites []string, _ api.TransferOptions) (api.TransferInfo, error) {
			sends = append(sends, slices.Clone(sites))
			var targets []api.TargetProgress
			for i, site := range sites {
				if want := "vm@" + stateName(site, api.ModePush, now); sources[i] != want {
					t.Fatalf("send %s to %s, want %s", sources[i], site, want)
				}
				tp := api.TargetProgress{State: "done", Bytes: 100}
				if site == "paris" {
					tp = api.TargetProgress{State: "failed", Error: "connection reset"}
				}
				targets = append(targets, tp)
			}
			return api.TransferInfo{State: "failed", Targets: targets}, nil
		},
		now: func() time.Time { return now },
	}
	sites := []string{"berlin", "paris", "rome", "oslo"}
	ps := make([]api.Policy, len(sites))
	for i, site := range sites {
		ps[i] = api.Policy{Disk: "vm", Site: site, Mode: api.ModePush, Keep: 2}
	}
	got, roots := c.runAll(context.Background(), ps, make([]cid.Cid, len(ps)))
	if want := [][]string{{"berlin", "paris", "oslo"}}; !slices.EqualFunc(sends, want, slices.Equal) {
		t.Fatalf("sends %v, want one to every reachable site: %v", sends, want)
	}
	for i, p := range got {
		ok := p.Site == "berlin" || p.Site == "oslo"
		if ok != (p.LastError == "") || ok != (p.Cycles == 1) || ok != roots[i].Defined() {
			t.Errorf("%s: error %q, %d cycles, root %v; want success %v", p.Site, p.LastError, p.Cycles, roots[i], ok)
		}
		if !p.LastTry.Equal(now) {
			t.Errorf("%s: last try %v, want %v", p.Site, p.LastTry, now)
		}
	}
	if want := []string{stateName("berlin", api.ModePush, now), stateName("oslo", api.ModePush, now)}; !slices.Equal(f.names(), want) {
		t.Fatalf("replicas left %v, want %v", f.names(), want)
	}
	// One swarm pushes one root: every site's replica names the same one,
	// though the disk moved between the replicas taken.
	if b, o := f.reps[stateName("berlin", api.ModePush, now)], f.reps[stateName("oslo", api.ModePush, now)]; b.Root != o.Root {
		t.Fatalf("replicas of one cycle name roots %s and %s, want one", b.Root, o.Root)
	}
	if !roots[0].Equals(roots[3]) {
		t.Fatalf("the sites hold %s and %s after one cycle, want one root", roots[0], roots[3])
	}
	if !strings.Contains(got[1].LastError, "connection reset") {
		t.Fatalf("paris: error %q, want the target's", got[1].LastError)
	}
}

// TestPushGroups: the push policies of a disk that fall due run together,
// with those of the same disk and options past half their interval; a
// policy that has just run, or other options, do not join.
func TestPushGroups(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	rec := func(disk, site string, every, ago time.Duration, o api.TransferOptions) policyRecord {
		return policyRecord{catalog.Entry{Key: catalog.ReplicateKey(disk, site)},
			api.Policy{Disk: disk, Site: site, Mode: api.ModePush, Every: every, Options: o, LastTry: now.Add(-ago)}}
	}
	low := api.TransferOptions{Priority: "low"}
	ps := []policyRecord{
		rec("vm", "a", time.Minute, time.Hour, api.TransferOptions{}),      // due
		rec("vm", "b", time.Minute, 40*time.Second, api.TransferOptions{}), // past half: joins
		rec("vm", "c", time.Minute, 10*time.Second, api.TransferOptions{}), // just ran
		rec("vm", "d", time.Minute, time.Minute, low),                      // due, other options
		rec("db", "a", time.Minute, 50*time.Second, api.TransferOptions{}), // past half, nothing due
	}
	var got [][]string
	for _, g := range pushGroups(ps, now) {
		var names []string
		for _, r := range g {
			names = append(names, r.policy.Disk+"/"+r.policy.Site)
		}
		got = append(got, names)
	}
	if want := [][]string{{"vm/a", "vm/b"}, {"vm/d"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("groups %v, want %v", got, want)
	}
}

// TestPushGroupsWaitForSiblings: policies added one by one (replicate
// --to s1,s2,...: a request each) run their first cycle together: a group
// with a policy added less than policySettle ago and never tried waits,
// then runs with every site in it.
func TestPushGroupsWaitForSiblings(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	added := func(site string, ago time.Duration) policyRecord {
		return policyRecord{catalog.Entry{Key: catalog.ReplicateKey("vm", site), Modified: now.Add(-ago)},
			api.Policy{Disk: "vm", Site: site, Mode: api.ModePush, Every: time.Hour}}
	}
	ps := []policyRecord{added("a", 1500*time.Millisecond), added("b", 800*time.Millisecond), added("c", 100*time.Millisecond)}
	if g := pushGroups(ps, now); len(g) != 0 {
		t.Fatalf("a group ran while its last policy was being added: %d groups", len(g))
	}
	g := pushGroups(ps, now.Add(policySettle))
	if len(g) != 1 {
		t.Fatalf("after the settle time: %d groups, want one", len(g))
	}
	if len(g[0]) != 3 {
		t.Fatalf("after the settle time: a group of %d sites, want all 3", len(g[0]))
	}
}
