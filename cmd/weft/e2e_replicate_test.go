package main

import (
	"fmt"
	"github.com/weft-mesh/weft/api"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/node"
)

// policiesOf lists the replication policies h knows, by DISK/SITE/MODE.
func policiesOf(h *harness) map[string]node.Policy {
	h.t.Helper()
	var ps []node.Policy
	h.jsonOut(&ps, "replicate", "ls")
	out := map[string]node.Policy{}
	for _, p := range ps {
		out[p.Disk+"/"+p.Site+"/"+p.Mode] = p
	}
	return out
}

// replicatedStates lists the replicas of disk on h that replication took.
func replicatedStates(h *harness, disk string) []string {
	h.t.Helper()
	var reps []api.ReplicaInfo
	h.jsonOut(&reps, "replica", "ls", disk)
	var names []string
	for _, r := range reps {
		if strings.HasPrefix(r.Name, "repl-") {
			names = append(names, r.Name)
		}
	}
	return names
}

// policyRow returns the fields of the replicate ls row of disk to site by
// mode, up to LAG (LAST SUCCESS is "-" or a date and a time).
func policyRow(t *testing.T, table, disk, site, mode string) []string {
	t.Helper()
	for _, line := range strings.Split(table, "\n") {
		if f := strings.Fields(line); len(f) > 8 && f[0] == disk && f[1] == mode && f[2] == site {
			if f[6] == "-" {
				return f[:8]
			}
			return append(f[:6:6], f[6]+" "+f[7], f[8])
		}
	}
	t.Fatalf("replicate ls: no row for %s %s %s:\n%s", disk, mode, site, table)
	return nil
}

// TestReplicatePolicies: a policy to a site no member is at, or to the
// owner's own site, is refused, and a nonsense --every or --keep is a bad
// command line (exit 2); a policy to a site whose only node is stopped
// fails cycle after cycle without leaving a replica, and lists as failing
// with LAG never; a push and a pull policy of one disk to one site
// coexist with their own settings, and replicate rm says what they keep.
func TestReplicatePolicies(t *testing.T) {
	needTool(t, "qemu-io", "qemu-utils")
	a := meshMember(t, "site-a", "127.0.0.1", "")
	b := meshMember(t, "site-b", "127.0.0.2", a.home)
	c := meshMember(t, "site-c", "127.0.0.3", a.home)
	b.ok("join", a.addr())
	c.ok("join", a.addr())
	eventually(t, "three members", func() (bool, string) { n := a.alivePeers(); return n == 3, fmt.Sprint(n) })
	a.ok("disk", "create", "d", "--size", "4M", "--replicas", "1")

	a.fails(`no member of the mesh is at site "madrid"`, "replicate", "d", "--to", "madrid", "--every", "1s", "--keep", "2")
	a.fails(`owner is at site "site-a" itself`, "replicate", "d", "--to", "site-a", "--every", "1s", "--keep", "2")
	for _, bad := range [][]string{{"--keep", "0"}, {"--keep", "-1"}, {"--every", "0s"}, {"--every", "500ms"}, {"--to", "site-b,,site-c"}, {"--to", "site-b, site-b"}} {
		args := append([]string{"replicate", "d", "--to", "site-b"}, bad...)
		if r := a.run(nil, args...); r.code != 2 {
			t.Errorf("weft %s: exit %d, want 2 (a bad command line); stderr: %s", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	if ps := policiesOf(a); len(ps) != 0 {
		t.Fatalf("refused policies were stored: %+v", ps)
	}

	// Made while site-b is up (the disk empty: nothing to send yet); then
	// its only node stops and the disk changes.
	a.ok("replicate", "d", "--to", "site-b", "--every", "1s", "--keep", "2")
	b.stopDaemon()
	eventually(t, "site-b down", func() (bool, string) { n := a.alivePeers(); return n == 2, fmt.Sprint(n, " alive") })
	a.nbdWrite("d", 0x51, 0, 1<<20)
	failed := map[time.Time]bool{}
	eventually(t, "four failed cycles", func() (bool, string) {
		p := policiesOf(a)["d/site-b/push"]
		if p.LastError != "" {
			failed[p.LastTry] = true
		}
		return len(failed) >= 4, fmt.Sprintf("%d failed: %+v", len(failed), p)
	})
	p := policiesOf(a)["d/site-b/push"]
	if p.Status != node.PolicyFailing || p.Lag != nil || p.Cycles != 0 || !strings.Contains(p.LastError, `no live member at site "site-b"`) {
		t.Fatalf("policy to the stopped site: %+v, want failing, no lag, no cycles, the reason", p)
	}
	if reps := replicatedStates(a, "d"); len(reps) != 0 {
		t.Fatalf("failed cycles left replicas %v, want none", reps)
	}
	if got, want := policyRow(t, a.ok("replicate", "ls"), "d", "site-b", "push"), []string{"d", "push", "site-b", "1s", "2", "failing", "-", "never"}; !slices.Equal(got, want) {
		t.Fatalf("replicate ls row %q, want %q", got, want)
	}
	if out := a.ok("replicate", "rm", "d", "--to", "site-b"); !strings.Contains(out, "removed push policy d → site-b; it kept no replicated states") {
		t.Fatalf("replicate rm: %q, want it to say nothing was kept", out)
	}

	// A pull and a push to site-c, each with its own settings.
	c.ok("replicate", "d", "--pull", "--every", "1s", "--keep", "1")
	a.ok("replicate", "d", "--to", "site-c", "--every", "1s", "--keep", "2", "--priority", "low", "--bwlimit", "20M")
	var push, pull node.Policy
	eventually(t, "both policies to site-c ran", func() (bool, string) {
		ps := policiesOf(c)
		push, pull = ps["d/site-c/push"], ps["d/site-c/pull"]
		return len(ps) == 2 && push.Cycles >= 1 && pull.Cycles >= 1, fmt.Sprintf("%+v", ps)
	})
	if push.Keep != 2 || push.Options.Priority != "low" || push.Options.BWLimit == 0 || push.Puller != "" ||
		pull.Keep != 1 || pull.Options.Priority != "normal" || pull.Options.BWLimit != 0 || pull.Puller != c.peerID() {
		t.Fatalf("policies took each other's settings: push %+v, pull %+v", push, pull)
	}
	// Each runner updates its own record; the other node learns it by
	// gossip, so its listing may be a moment behind.
	for _, h := range []*harness{a, c} {
		eventually(t, "replicate ls on "+h.home+" shows both policies ok", func() (bool, string) {
			table := h.ok("replicate", "ls")
			for _, mode := range []string{"push", "pull"} {
				if row := policyRow(t, table, "d", "site-c", mode); row[5] != node.PolicyOK || row[7] != "0s" {
					return false, fmt.Sprintf("%s row %q: want ok, lag 0s", mode, row)
				}
			}
			return true, ""
		})
	}
	if reps := replicatedStates(c, "d"); !slices.Contains(reps, push.LastReplica) || !slices.Contains(reps, pull.LastReplica) {
		t.Fatalf("site-c holds %v, want %s and %s", reps, push.LastReplica, pull.LastReplica)
	}
	c.fails("both a push and a pull policy replicate d to site-c", "replicate", "rm", "d", "--to", "site-c")
	if out := c.ok("replicate", "rm", "d", "--to", "site-c", "--mode", "pull"); !strings.Contains(out,
		"removed pull policy d → site-c; kept 1 replicated state on the pulling node at site-c: "+pull.LastReplica+"; remove them with: weft replica rm d NAME") {
		t.Fatalf("replicate rm --mode pull: %q", out)
	}
	eventually(t, "the pull policy gone on the owner", func() (bool, string) {
		ps := policiesOf(a)
		_, ok := ps["d/site-c/pull"]
		return !ok && len(ps) == 1, fmt.Sprintf("%+v", ps)
	})
	if out := a.ok("replicate", "rm", "d", "--to", "site-c"); !strings.Contains(out, "kept 1 replicated state on the owner and at site-c: "+push.LastReplica) {
		t.Fatalf("replicate rm: %q", out)
	}
}
