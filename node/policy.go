package node

import (
	"encoding/json"
	"fmt"
	"github.com/weft-mesh/weft/api"
	"slices"
	"strings"
	"time"

	"github.com/weft-mesh/weft/mesh"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

// Policy is api.Policy.
type Policy = api.Policy

// Modes and statuses of a policy: see api.
const (
	ModePush = api.ModePush
	ModePull = api.ModePull

	PolicyOK       = api.PolicyOK
	PolicyPending  = api.PolicyPending
	PolicyFailing  = api.PolicyFailing
	PolicyDiskGone = api.PolicyDiskGone
)

// ReplicateRequest is api.ReplicateRequest.
type ReplicateRequest = api.ReplicateRequest

// PolicyRemoval is api.PolicyRemoval.
type PolicyRemoval = api.PolicyRemoval

const (
	defaultReplicateEvery = 5 * time.Minute
	// MinReplicateEvery is api.MinReplicateEvery.
	MinReplicateEvery    = api.MinReplicateEvery
	defaultReplicateKeep = 3
	// replicaPrefix and stateTimeLayout make the names of the replicas
	// replication takes (stateName).
	replicaPrefix   = "repl-"
	stateTimeLayout = "20060102-150405"
	pullStateSuffix = "-pull"
)

// policyKey returns the catalog key of p.
func policyKey(p Policy) string {
	if p.Mode == ModePull {
		return catalog.ReplicatePullKey(p.Disk, p.Site)
	}
	return catalog.ReplicateKey(p.Disk, p.Site)
}

func decodePolicy(e catalog.Entry) (Policy, error) {
	var p Policy
	if err := json.Unmarshal(e.Policy, &p); err != nil {
		return p, fmt.Errorf("policy %s: %w", e.Key, err)
	}
	p.Mode = ModePush // records written before modes had a field of their own say it with Puller
	if p.Puller != "" {
		p.Mode = ModePull
	}
	p.Status, p.Lag = "", nil
	return p, nil
}

// checkPolicy turns req, made on node self of site, into the policy it
// asks for, or says why it makes no sense. disk is the disk's catalog
// entry; members are the mesh's members in every state (the sites they are
// at are the sites a policy may name, the owner's excepted).
func checkPolicy(req ReplicateRequest, disk catalog.Entry, self, site string, members []mesh.Member) (Policy, error) {
	mode := ModePush
	switch {
	case req.Pull && disk.Owner == self:
		return Policy{}, fmt.Errorf("replicate %s --pull: this node owns the disk; pull from another site's node: %w", req.Disk, volume.ErrInvalid)
	case req.Pull && req.Site != "" && req.Site != site:
		return Policy{}, fmt.Errorf("replicate --pull keeps the copy at this node's site %q, not %q: %w", site, req.Site, volume.ErrInvalid)
	case req.Pull:
		req.Site, mode = site, ModePull
	case disk.Owner != self:
		return Policy{}, kindf(ErrNotOwner, "replicate %s: not a disk this node owns (run it on the owner, or use --pull at the site)", req.Disk)
	}
	if err := volume.ValidateName(req.Site); err != nil {
		return Policy{}, err
	}
	var sites []string
	ownerSite := ""
	for _, m := range members {
		if !slices.Contains(sites, m.Site) {
			sites = append(sites, m.Site)
		}
		if m.ID.String() == disk.Owner {
			ownerSite = m.Site
		}
	}
	slices.Sort(sites)
	switch {
	case !slices.Contains(sites, req.Site):
		return Policy{}, kindf(volume.ErrNotFound, "replicate %s: no member of the mesh is at site %q (sites: %s)",
			req.Disk, req.Site, strings.Join(sites, ", "))
	case req.Site == ownerSite:
		return Policy{}, fmt.Errorf("replicate %s: the disk's owner is at site %q itself; replicate to another site: %w", req.Disk, req.Site, volume.ErrInvalid)
	}
	if req.Every == 0 {
		req.Every = defaultReplicateEvery
	}
	if req.Every < MinReplicateEvery {
		return Policy{}, fmt.Errorf("replicate: --every %v is below %v: %w", req.Every, MinReplicateEvery, volume.ErrInvalid)
	}
	if req.Keep == 0 {
		req.Keep = defaultReplicateKeep
	}
	if req.Keep < 1 {
		return Policy{}, fmt.Errorf("replicate: --keep %d: keep at least 1 replicated state: %w", req.Keep, volume.ErrInvalid)
	}
	if _, err := transferSpec("check", disk, nil, req.Options); err != nil {
		return Policy{}, err
	}
	p := Policy{Disk: req.Disk, Site: req.Site, Mode: mode, Every: req.Every, Keep: req.Keep, Options: req.Options}
	if mode == ModePull {
		p.Puller = self
	}
	return p, nil
}

// withStatus returns p with its Status and Lag at now, given its disk's
// catalog entry (found false: the disk is gone).
func withStatus(p Policy, disk catalog.Entry, found bool, now time.Time) Policy {
	switch {
	case !found:
		p.Status = PolicyDiskGone
	case p.LastError != "":
		p.Status = PolicyFailing
	case p.LastSuccess.IsZero():
		p.Status = PolicyPending
	default:
		p.Status = PolicyOK
	}
	if found && !p.LastSuccess.IsZero() {
		lag := 0.0
		if rootText(disk.Root) != p.LastSource {
			lag = now.Sub(p.LastSuccess).Seconds()
		}
		p.Lag = &lag
	}
	return p
}

// stateName names the replica a cycle of the policy to site takes at t:
// repl-SITE-TIME for a push, repl-SITE-TIME-pull for a pull. The time has
// a fixed length, so a name says exactly which policy took it: push and
// pull policies to one site, and policies to sites whose names share a
// prefix, never prune each other's states.
func stateName(site, mode string, t time.Time) string {
	name := replicaPrefix + site + "-" + t.UTC().Format(stateTimeLayout)
	if mode == ModePull {
		name += pullStateSuffix
	}
	return name
}

// parseStateName is the inverse of stateName; ok is false for a replica
// replication did not take.
func parseStateName(name string) (site, mode string, t time.Time, ok bool) {
	mode = ModePush
	if s, cut := strings.CutSuffix(name, pullStateSuffix); cut {
		name, mode = s, ModePull
	}
	rest, found := strings.CutPrefix(name, replicaPrefix)
	if !found || len(rest) < len(stateTimeLayout)+2 {
		return "", "", time.Time{}, false
	}
	site, stamp := rest[:len(rest)-len(stateTimeLayout)-1], rest[len(rest)-len(stateTimeLayout)-1:]
	t, err := time.Parse(stateTimeLayout, stamp[1:])
	if err != nil || stamp[0] != '-' {
		return "", "", time.Time{}, false
	}
	return site, mode, t, true
}

// isStateOf reports whether the replica name is a replicated state of p.
func isStateOf(p Policy, name string) bool {
	site, mode, _, ok := parseStateName(name)
	return ok && site == p.Site && mode == p.Mode
}

// surplusStates returns, among the replica names of p's disk, p's
// replicated states beyond the newest p.Keep, oldest first; the one the
// site holds last (p.LastReplica) is always kept.
func surplusStates(p Policy, names []string) []string {
	keep := p.Keep
	if keep < 1 {
		keep = defaultReplicateKeep // a policy written before keep existed
	}
	var states []string
	for _, name := range names {
		if isStateOf(p, name) && name != p.LastReplica {
			states = append(states, name)
		}
	}
	if p.LastReplica != "" {
		keep-- // the last one counts toward keep
	}
	slices.Sort(states) // the names of one policy differ in their time only: oldest first
	return states[:max(0, len(states)-keep)]
}
