package transfer

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/internal/errkind"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/volume"
)

const (
	defaultReplicateEvery = 5 * time.Minute
	defaultReplicateKeep  = 3
	// replicaPrefix and stateTimeLayout make the names of the replicas
	// replication takes (stateName).
	replicaPrefix   = "repl-"
	stateTimeLayout = "20060102-150405"
	pullStateSuffix = "-pull"
)

// policyKey returns the catalog key of p.
func policyKey(p api.Policy) string {
	if p.Mode == api.ModePull {
		return catalog.ReplicatePullKey(p.Disk, p.Site)
	}
	return catalog.ReplicateKey(p.Disk, p.Site)
}

func decodePolicy(e catalog.Entry) (api.Policy, error) {
	var p api.Policy
	if err := json.Unmarshal(e.Policy, &p); err != nil {
		return p, fmt.Errorf("policy %s: %w", e.Key, err)
	}
	p.Mode = api.ModePush // records written before modes had a field of their own say it with Puller
	if p.Puller != "" {
		p.Mode = api.ModePull
	}
	p.Status, p.Lag = "", nil
	return p, nil
}

// checkPolicy turns req, made on node self of site, into the policy it
// asks for, or says why it makes no sense. disk is the disk's catalog
// entry; members are the mesh's members in every state (the sites they are
// at are the sites a policy may name, the owner's excepted); owned is the
// cluster's answer to whether self may write the disk (nil: it owns it).
func checkPolicy(req api.ReplicateRequest, disk catalog.Entry, self, site string, members []meshnet.Member, owned error) (api.Policy, error) {
	mode := api.ModePush
	switch {
	case req.Pull && disk.Owner == self:
		return api.Policy{}, fmt.Errorf("replicate %s --pull: this node owns the disk; pull from another site's node: %w", req.Disk, volume.ErrInvalid)
	case req.Pull && req.Site != "" && req.Site != site:
		return api.Policy{}, fmt.Errorf("replicate --pull keeps the copy at this node's site %q, not %q: %w", site, req.Site, volume.ErrInvalid)
	case req.Pull:
		req.Site, mode = site, api.ModePull
	case owned != nil:
		return api.Policy{}, fmt.Errorf("replicate %s: %w (or use --pull at the site)", req.Disk, owned)
	}
	if err := volume.ValidateName(req.Site); err != nil {
		return api.Policy{}, err
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
		return api.Policy{}, errkind.Errorf(volume.ErrNotFound, "replicate %s: no member of the mesh is at site %q (sites: %s)",
			req.Disk, req.Site, strings.Join(sites, ", "))
	case req.Site == ownerSite:
		return api.Policy{}, fmt.Errorf("replicate %s: the disk's owner is at site %q itself; replicate to another site: %w", req.Disk, req.Site, volume.ErrInvalid)
	}
	if req.Every == 0 {
		req.Every = defaultReplicateEvery
	}
	if req.Every < api.MinReplicateEvery {
		return api.Policy{}, fmt.Errorf("replicate: --every %v is below %v: %w", req.Every, api.MinReplicateEvery, volume.ErrInvalid)
	}
	if req.Keep == 0 {
		req.Keep = defaultReplicateKeep
	}
	if req.Keep < 1 {
		return api.Policy{}, fmt.Errorf("replicate: --keep %d: keep at least 1 replicated state: %w", req.Keep, volume.ErrInvalid)
	}
	if _, err := transferSpec("check", disk, nil, req.Options); err != nil {
		return api.Policy{}, err
	}
	p := api.Policy{Disk: req.Disk, Site: req.Site, Mode: mode, Every: req.Every, Keep: req.Keep, Options: req.Options}
	if mode == api.ModePull {
		p.Puller = self
	}
	return p, nil
}

// withStatus returns p with its Status and Lag at now, given its disk's
// catalog entry (found false: the disk is gone).
func withStatus(p api.Policy, disk catalog.Entry, found bool, now time.Time) api.Policy {
	switch {
	case !found:
		p.Status = api.PolicyDiskGone
	case p.LastError != "":
		p.Status = api.PolicyFailing
	case p.LastSuccess.IsZero():
		p.Status = api.PolicyPending
	default:
		p.Status = api.PolicyOK
	}
	if found && !p.LastSuccess.IsZero() {
		lag := 0.0
		if disk.Root != lastSource(p) {
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
	if mode == api.ModePull {
		name += pullStateSuffix
	}
	return name
}

// parseStateName is the inverse of stateName; ok is false for a replica
// replication did not take.
func parseStateName(name string) (site, mode string, t time.Time, ok bool) {
	mode = api.ModePush
	if s, cut := strings.CutSuffix(name, pullStateSuffix); cut {
		name, mode = s, api.ModePull
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
func isStateOf(p api.Policy, name string) bool {
	site, mode, _, ok := parseStateName(name)
	return ok && site == p.Site && mode == p.Mode
}

// surplusStates returns, among the replica names of p's disk, p's
// replicated states beyond the newest p.Keep, oldest first; the one the
// site holds last (p.LastReplica) is always kept.
func surplusStates(p api.Policy, names []string) []string {
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

// setPolicy writes p to the catalog under the disk's current epoch.
func (s *Service) setPolicy(p api.Policy, root cid.Cid) error {
	p.Status, p.Lag = "", nil // worked out when listed
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	key := policyKey(p)
	e, _ := s.record(key)
	e.Key, e.Owner, e.Root, e.Policy = key, s.selfStr, root, b
	_, err = s.cat.PutRecord(e)
	return err
}

// savePolicy writes what a cycle of p did onto the policy's current
// record and returns the policy as saved, or false when p was removed
// meanwhile: a cycle must neither bring back a policy an operator removed
// while it ran nor undo a change of its settings (withSettings).
func (s *Service) savePolicy(p api.Policy, root cid.Cid) (api.Policy, bool) {
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	cur, ok := s.currentPolicy(p)
	if !ok {
		s.log.Info("policy removed during its cycle: not saved", "disk", p.Disk, "site", p.Site, "mode", p.Mode)
		return api.Policy{}, false
	}
	p = withSettings(p, cur)
	if err := s.setPolicy(p, root); err != nil {
		s.log.Error("save policy", "err", err)
	}
	return p, true
}

// currentPolicy returns p as its catalog record holds it now, or false
// when it has none.
func (s *Service) currentPolicy(p api.Policy) (api.Policy, bool) {
	e, ok := s.record(policyKey(p))
	if !ok {
		return api.Policy{}, false
	}
	cur, err := decodePolicy(e)
	return cur, err == nil
}

// withSettings returns p, with its history (the Last* fields, cycles,
// bytes), under the settings an operator gave set (replicate).
func withSettings(p, set api.Policy) api.Policy {
	p.Every, p.Keep, p.Options, p.Puller = set.Every, set.Keep, set.Options, set.Puller
	return p
}

// policyRecord is a policy with the catalog entry holding it.
type policyRecord struct {
	entry  catalog.Entry
	policy api.Policy
}

// policyRecords returns the policies replicating disk to site: a push, a
// pull, or both.
func (s *Service) policyRecords(disk, site string) []policyRecord {
	var out []policyRecord
	for _, key := range []string{catalog.ReplicateKey(disk, site), catalog.ReplicatePullKey(disk, site)} {
		if e, ok := s.record(key); ok {
			if p, err := decodePolicy(e); err == nil {
				out = append(out, policyRecord{e, p})
			}
		}
	}
	return out
}

// movePullRecord moves a pull policy written before pull policies had a
// key of their own (it sits under the push key) to its own key, so that a
// push policy to the same site can be added beside it.
func (s *Service) movePullRecord(r policyRecord) error {
	if r.entry.Key == policyKey(r.policy) {
		return nil
	}
	if err := s.setPolicy(r.policy, r.entry.Root); err != nil {
		return fmt.Errorf("move policy %s: %w", r.entry.Key, err)
	}
	if _, err := s.cat.Tombstone(r.entry.Key, r.entry.Epoch); err != nil {
		return fmt.Errorf("move policy %s: %w", r.entry.Key, err)
	}
	return nil
}

// AddPolicy stores a new or changed policy for a disk this node owns, or,
// for a pull, of this node's site.
func (s *Service) AddPolicy(req api.ReplicateRequest) (api.Policy, error) {
	d, ok := s.cat.Entry(volume.Ref{Disk: req.Disk})
	if !ok {
		return api.Policy{}, errkind.Errorf(volume.ErrNotFound, "replicate %s: no such disk in the mesh", req.Disk)
	}
	p, err := checkPolicy(req, d, s.selfStr, s.site, s.cat.Members(), s.cat.CheckOwner(req.Disk))
	if err != nil {
		return api.Policy{}, err
	}
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	var root cid.Cid
	for _, r := range s.policyRecords(p.Disk, p.Site) {
		if err := s.movePullRecord(r); err != nil {
			return api.Policy{}, err
		}
		if r.policy.Mode == p.Mode { // keep the history
			p, root = withSettings(r.policy, p), r.entry.Root
		}
	}
	return p, s.setPolicy(p, root)
}

// Policies lists every policy of the catalog, with its status and lag.
func (s *Service) Policies() []api.Policy {
	out := []api.Policy{}
	now := s.clock.Now()
	for _, e := range s.cat.List(catalog.ReplicatePrefix) {
		p, err := decodePolicy(e)
		if err != nil {
			continue
		}
		d, ok := s.cat.Entry(volume.Ref{Disk: p.Disk})
		out = append(out, withStatus(p, d, ok, now))
	}
	return out
}

// RemovePolicy removes the policy replicating disk to site by mode ("":
// the only one there is) and names the replicated states it leaves.
func (s *Service) RemovePolicy(disk, site, mode string) (api.PolicyRemoval, error) {
	if mode != "" && mode != api.ModePush && mode != api.ModePull {
		return api.PolicyRemoval{}, fmt.Errorf("mode %q: want %s or %s: %w", mode, api.ModePush, api.ModePull, volume.ErrInvalid)
	}
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	var found []policyRecord
	for _, r := range s.policyRecords(disk, site) {
		if mode == "" || r.policy.Mode == mode {
			found = append(found, r)
		}
	}
	switch {
	case len(found) == 0 && mode != "":
		return api.PolicyRemoval{}, errkind.Errorf(volume.ErrNotFound, "no %s replication of %s to %s", mode, disk, site)
	case len(found) == 0:
		return api.PolicyRemoval{}, errkind.Errorf(volume.ErrNotFound, "no replication of %s to %s", disk, site)
	case len(found) > 1:
		return api.PolicyRemoval{}, fmt.Errorf("both a push and a pull policy replicate %s to %s: say which with --mode %s or --mode %s: %w",
			disk, site, api.ModePush, api.ModePull, volume.ErrInvalid)
	}
	r := found[0]
	if _, err := s.cat.Tombstone(r.entry.Key, r.entry.Epoch); err != nil {
		return api.PolicyRemoval{}, err
	}
	out := api.PolicyRemoval{Policy: r.policy, Kept: []string{}}
	prefix := catalog.ReplicaPrefix + disk + "/"
	for _, e := range s.cat.List(prefix) {
		if name := strings.TrimPrefix(e.Key, prefix); isStateOf(r.policy, name) {
			out.Kept = append(out.Kept, name)
		}
	}
	return out, nil
}
