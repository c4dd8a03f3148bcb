package main

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/weft-mesh/weft/node"
)

// TestConcurrentPullsSwarmOnCappedLinks has three sites pull one spacesuit
// from an origin at once, every link capped at 20 Mbit/s each way: the
// origin, their tracker, tells each who else pulls it, so it sends about
// one copy in all (not three), and every site gets blocks from the others.
func TestConcurrentPullsSwarmOnCappedLinks(t *testing.T) {
	const size = 8 << 20
	sites := goldSites(t, 4, 20, size)
	originID := sites[0].peerID()
	results := make([]result, len(sites))
	var wg sync.WaitGroup
	for i, h := range sites[1:] {
		wg.Go(func() { results[i+1] = h.run(nil, "pull", "gold@1", "--from", "s0", "--json") })
	}
	wg.Wait()
	var fromOrigin int64
	for i, r := range results[1:] {
		var tr node.TransferInfo
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &tr) != nil {
			t.Fatalf("s%d: pull exit %d: %s %s", i+1, r.code, r.stdout, r.stderr)
		}
		t.Logf("s%d: %v", i+1, tr.BytesFrom)
		if tr.State != "done" || tr.BytesSent < size*3/4 {
			t.Fatalf("s%d: pull %+v: want done, having received most of the %d bytes", i+1, tr, size)
		}
		fromOrigin += tr.BytesFrom[originID]
		if tr.BytesSent == tr.BytesFrom[originID] {
			t.Errorf("s%d got nothing from the other sites", i+1)
		}
	}
	if copies := float64(fromOrigin) / size; copies > 1.25 {
		t.Fatalf("the origin sent %.2f copies, want at most 1.25", copies)
	} else {
		t.Logf("the origin sent %.2f copies", copies)
	}
}

// TestReplicateSwarmsOnCappedLinks replicates a disk to three sites on
// capped links: the three policies run as one cycle, one push to all
// three sites, each keeping its own replicated state, and the origin sends
// about one copy in all.
func TestReplicateSwarmsOnCappedLinks(t *testing.T) {
	const size = 8 << 20
	sites := goldSites(t, 4, 20, size)
	origin := sites[0]
	origin.ok("replicate", "gold-disk", "--to", "s1,s2,s3", "--every", "1h", "--keep", "1")
	var ps []node.Policy
	eventually(t, "three policies ok", func() (bool, string) {
		origin.jsonOut(&ps, "replicate", "ls")
		ok := 0
		for _, p := range ps {
			if p.Status == node.PolicyOK {
				ok++
			}
		}
		return ok == 3, fmt.Sprint(ps)
	})
	var trs []node.TransferInfo
	origin.jsonOut(&trs, "transfers")
	var pushes []node.TransferInfo
	for _, tr := range trs {
		if tr.Kind == "push" && len(tr.Targets) > 0 {
			pushes = append(pushes, tr)
		}
	}
	if len(pushes) != 1 || len(pushes[0].Targets) != 3 {
		t.Fatalf("pushes %+v, want one to the three sites", pushes)
	}
	originID := origin.peerID()
	var fromOrigin int64
	for _, tp := range pushes[0].Targets {
		t.Logf("%s: %v", tp.Target, tp.BytesFrom)
		fromOrigin += tp.BytesFrom[originID]
		if tp.Bytes == tp.BytesFrom[originID] {
			t.Errorf("%s got nothing from the other sites", tp.Target)
		}
	}
	for _, p := range ps {
		if want := "repl-" + p.Site + "-"; len(p.LastReplica) < len(want) || p.LastReplica[:len(want)] != want {
			t.Errorf("policy to %s holds %q, want a state named %s…", p.Site, p.LastReplica, want)
		}
		if p.LastBytes < size*3/4 {
			t.Errorf("policy to %s: last bytes %d, want most of %d", p.Site, p.LastBytes, size)
		}
	}
	if copies := float64(fromOrigin) / size; copies > 1.1 {
		t.Fatalf("the origin sent %.2f copies, want at most 1.1", copies)
	} else {
		t.Logf("the origin sent %.2f copies", copies)
	}
}
