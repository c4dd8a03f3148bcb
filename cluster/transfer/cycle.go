package transfer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/internal/errkind"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/volume"
)

// dropTimeout bounds the removal of a failed cycle's replica, which runs
// even when the cycle was cut short by the daemon stopping.
const dropTimeout = 10 * time.Second

// replicateLoop runs the due policies of the disks this node owns, and the
// pull policies this node runs, one cycle at a time; the push policies of
// one disk that fall due together run as one cycle (pushGroups).
func (s *Service) replicateLoop(ctx context.Context) {
	t := s.clock.NewTicker(replicateTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		var pushes []policyRecord
		for _, e := range s.cat.List(catalog.ReplicatePrefix) {
			p, err := decodePolicy(e)
			if err != nil {
				continue
			}
			d, ok := s.cat.Entry(volume.Ref{Disk: p.Disk})
			switch {
			case !ok:
			case p.Puller == "" && d.Owner == s.selfStr:
				pushes = append(pushes, policyRecord{e, p})
			case p.Puller == s.selfStr && s.clock.Now().Sub(p.LastTry) >= p.Every:
				if err := s.movePullRecord(policyRecord{e, p}); err != nil {
					s.log.Error("move a pull policy to its own key", "err", err)
					continue
				}
				s.pullCycle(ctx, p, e.Root, d)
			}
		}
		for _, g := range pushGroups(pushes, s.clock.Now()) {
			s.cycle(ctx, g)
		}
	}
}

// replicateTick is how often the loop looks for due policies: the
// shortest interval a policy may have (api.MinReplicateEvery).
const replicateTick = time.Second

// policySettle is how long a group of push policies waits, after one of
// them was added and not yet tried, before it runs: `replicate --to
// s1,s2,…` adds one policy per site, a request each, and their first
// cycle must push to all of them at once, not to the first alone.
const policySettle = 2 * time.Second

// pushGroups returns the push policies among ps to run now, in groups
// that run as one cycle each: those of one disk and the same transfer
// options, so that a disk replicated to several sites leaves this node
// once per cycle, not once per site. A group forms around the policies
// that are due; it takes along the others of its disk and options that
// are past half their interval, so that policies added at different
// times fall into step after one cycle rather than each pushing alone;
// a group with a policy added less than policySettle ago waits for it.
func pushGroups(ps []policyRecord, now time.Time) [][]policyRecord {
	type groupKey struct {
		disk string
		opts api.TransferOptions
	}
	var keys []groupKey
	members := map[groupKey][]policyRecord{}
	due := map[groupKey]bool{}
	settling := map[groupKey]bool{}
	for _, r := range ps {
		k := groupKey{r.policy.Disk, r.policy.Options}
		if r.policy.LastTry.IsZero() && now.Sub(r.entry.Modified) < policySettle {
			settling[k] = true
		}
		since := now.Sub(r.policy.LastTry)
		if since < r.policy.Every/2 {
			continue
		}
		if _, seen := members[k]; !seen {
			keys = append(keys, k)
		}
		members[k] = append(members[k], r)
		due[k] = due[k] || since >= r.policy.Every
	}
	var out [][]policyRecord
	for _, k := range keys {
		if due[k] && !settling[k] {
			out = append(out, members[k])
		}
	}
	return out
}

// stateVolumes is what replication asks of this node's volumes.
type stateVolumes interface {
	Commit(ctx context.Context, disk string) (volume.DiskInfo, error)
	CreateReplica(ctx context.Context, disk, name string) (volume.ReplicaInfo, error)
	AddReplica(ctx context.Context, r volume.ReplicaInfo, root cid.Cid) error
	RemoveReplica(ctx context.Context, disk, name string) error
	ListReplicas(ctx context.Context, disk string) ([]volume.ReplicaInfo, error)
}

// replicatedStates keeps the replicas the cycles of policies take on this
// node.
type replicatedStates struct {
	vols stateVolumes
	// publish brings the catalog records of keys in line with this
	// node's replicas: a new one named, a removed one tombstoned (and so
	// removed at the site).
	publish func(ctx context.Context, keys ...string) error
	// removeReplica removes a replica here and tombstones its record in
	// one step, whoever wrote the record (a state the disk's previous
	// owner took is pruned like this node's own).
	removeReplica func(ctx context.Context, disk, name string) error
	log           *slog.Logger
}

func (s *Service) replicatedStates() replicatedStates {
	return replicatedStates{vols: s.vols, publish: s.cat.Publish, removeReplica: s.cat.RemoveReplica, log: s.log}
}

// publishReplicas publishes the records of disk's replicas names, logging
// a failure: the reconcile loop publishes them later.
func (s replicatedStates) publishReplicas(ctx context.Context, disk string, names []string) {
	keys := make([]string, len(names))
	for i, name := range names {
		keys[i] = catalog.ReplicaKey(disk, name)
	}
	if err := s.publish(ctx, keys...); err != nil {
		s.log.Warn("publish replicated states", "disk", disk, "replicas", names, "err", err)
	}
}

// prune removes the replicated states of p beyond the newest p.Keep that
// this node holds (surplusStates) and tombstones their records, so that
// the site, which holds copies under the same names, removes its own.
func (s replicatedStates) prune(ctx context.Context, p api.Policy) {
	reps, err := s.vols.ListReplicas(ctx, p.Disk)
	if err != nil {
		return
	}
	names := make([]string, len(reps))
	for i, r := range reps {
		names[i] = r.Name
	}
	var removed []string
	for _, name := range surplusStates(p, names) {
		if err := s.removeReplica(ctx, p.Disk, name); err != nil && !errors.Is(err, volume.ErrNotFound) {
			s.log.Error("prune replicated state", "disk", p.Disk, "replica", name, "err", err)
			continue
		}
		removed = append(removed, name)
	}
	if len(removed) > 0 {
		s.log.Info("pruned replicated states", "disk", p.Disk, "site", p.Site, "mode", p.Mode, "removed", len(removed), "keep", p.Keep)
	}
}

// remove removes the replica a failed cycle took, even when ctx is done
// (the daemon stopping cut the cycle short); the caller publishes the
// removal.
func (s replicatedStates) remove(ctx context.Context, disk, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dropTimeout)
	defer cancel()
	if err := s.vols.RemoveReplica(ctx, disk, name); err != nil && !errors.Is(err, volume.ErrNotFound) {
		s.log.Error("remove the replica of a failed cycle", "disk", disk, "replica", name, "err", err)
	}
}

// pushCycle is one cycle of push policies of one disk over the roles it
// uses.
type pushCycle struct {
	replicatedStates
	// reachable says why site cannot receive now; nil if it can.
	reachable func(site string) error
	// send pushes sources[i] (DISK@REPLICA) to sites[i], all in one swarm,
	// and waits for its end; the result has one target per site, in order.
	send func(ctx context.Context, sources, sites []string, o api.TransferOptions) (api.TransferInfo, error)
	now  func() time.Time
}

// run runs one cycle of p, whose site holds root last (runAll of one).
func (c pushCycle) run(ctx context.Context, p api.Policy, last cid.Cid) (api.Policy, cid.Cid) {
	ps, roots := c.runAll(ctx, []api.Policy{p}, []cid.Cid{last})
	return ps[0], roots[0]
}

// runAll runs one cycle of ps, push policies of one disk with the same
// transfer options, whose sites hold lasts: it commits the disk once, and
// for each site that lacks the disk's state and can receive, takes a
// replica (stateName); it then pushes those replicas, one state under each
// site's name, to all those sites in one swarm, so the disk's blocks leave
// this node about once whatever the number of sites. It returns the
// policies updated and the roots their sites hold now. A failed cycle
// leaves no replica behind: none is taken while a site cannot receive, and
// the one taken for a site is removed when the push to it fails.
func (c pushCycle) runAll(ctx context.Context, ps []api.Policy, lasts []cid.Cid) ([]api.Policy, []cid.Cid) {
	ps, lasts = slices.Clone(ps), slices.Clone(lasts)
	now := c.now()
	fail := func(i int, err error) {
		ps[i].LastError = err.Error()
		c.log.Warn("replication cycle failed", "disk", ps[i].Disk, "site", ps[i].Site, "err", err)
	}
	for i := range ps {
		ps[i].LastTry = now
	}
	disk := ps[0].Disk
	info, err := c.vols.Commit(ctx, disk)
	if err != nil {
		for i := range ps {
			fail(i, err)
		}
		return ps, lasts
	}
	var due []int                 // policies whose site gets a replica this cycle
	var reps []volume.ReplicaInfo // their replicas, in the same order
	for i, p := range ps {
		if !info.Root.Defined() || info.Root == lastSource(p) {
			ps[i].LastError = "" // nothing changed: nothing to send
			continue
		}
		if err := c.reachable(p.Site); err != nil {
			fail(i, err)
			continue
		}
		rep, err := c.stateFor(ctx, disk, stateName(p.Site, api.ModePush, now), reps)
		if err != nil {
			fail(i, err)
			continue
		}
		due, reps = append(due, i), append(reps, rep)
	}
	if len(due) == 0 {
		return ps, lasts
	}
	sources, sites, names := make([]string, len(due)), make([]string, len(due)), make([]string, len(due))
	for k, i := range due {
		sources[k], sites[k], names[k] = disk+"@"+reps[k].Name, ps[i].Site, reps[k].Name
	}
	c.publishReplicas(ctx, disk, names) // the replicas in the catalog before the sites ask for them
	res, err := c.send(ctx, sources, sites, ps[due[0]].Options)
	var dropped []string
	for k, i := range due {
		p := &ps[i]
		tp, terr := api.TargetProgress{}, err
		if terr == nil && k < len(res.Targets) {
			tp = res.Targets[k]
		} else if terr == nil {
			terr = fmt.Errorf("push %s to %s: no report of the site", reps[k].Name, p.Site)
		}
		if terr == nil && State(tp.State) != Done {
			terr = fmt.Errorf("push %s to %s: %s: %s", reps[k].Name, p.Site, tp.State, tp.Error)
		}
		if terr != nil {
			c.remove(ctx, disk, reps[k].Name)
			dropped = append(dropped, reps[k].Name)
			fail(i, terr)
			continue
		}
		p.LastReplica, p.LastSuccess, p.LastSource = reps[k].Name, c.now(), info.Root.String()
		p.LastBytes, p.LastError = tp.Bytes, ""
		p.TotalBytes += tp.Bytes
		p.Cycles++
		lasts[i] = reps[k].Root
		c.log.Info("replicated", "disk", disk, "site", p.Site, "replica", reps[k].Name, "bytes", tp.Bytes, "sites_at_once", len(due))
	}
	if len(dropped) > 0 { // tombstoned: a site that kept a copy drops it too
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dropTimeout)
		c.publishReplicas(pctx, disk, dropped)
		cancel()
	}
	return ps, lasts
}

// stateFor takes the replica name of disk for one site of a cycle: the
// first site's names the disk's content now; the others name that same
// root (one swarm pushes one root), not a later one the disk's writes
// since would give a replica taken anew.
func (c pushCycle) stateFor(ctx context.Context, disk, name string, taken []volume.ReplicaInfo) (volume.ReplicaInfo, error) {
	if len(taken) == 0 {
		return c.vols.CreateReplica(ctx, disk, name)
	}
	first := taken[0]
	rep := volume.ReplicaInfo{Disk: disk, Name: name, Size: first.Size, BlockSize: first.BlockSize, Created: first.Created, Root: first.Root}
	if err := c.vols.AddReplica(ctx, rep, first.Root); err != nil {
		return volume.ReplicaInfo{}, err
	}
	return rep, nil
}

// cycle runs one cycle of push policies ps of one disk (coalesce) and
// prunes what each keeps, failed or not, so that --keep bounds the
// replicas a policy leaves.
func (s *Service) cycle(ctx context.Context, ps []policyRecord) {
	c := pushCycle{replicatedStates: s.replicatedStates(), reachable: s.siteReachable, send: s.pushAndWait, now: s.clock.Now}
	policies, lasts := make([]api.Policy, len(ps)), make([]cid.Cid, len(ps))
	for i, r := range ps {
		policies[i], lasts[i] = r.policy, r.entry.Root
	}
	policies, lasts = c.runAll(ctx, policies, lasts)
	for i, p := range policies {
		if saved, ok := s.savePolicy(p, lasts[i]); ok { // removed meanwhile: its states are the operator's now
			c.prune(ctx, saved)
		}
	}
}

// siteReachable says why this node cannot push to site now.
func (s *Service) siteReachable(site string) error {
	if site == s.site {
		return fmt.Errorf("the disk's owner is at site %q itself: %w", site, volume.ErrInvalid)
	}
	for _, m := range s.cat.Members() {
		if m.Site == site && m.ID != s.self && m.State == meshnet.StateAlive {
			return nil
		}
	}
	return errkind.Errorf(volume.ErrNotFound, "no live member at site %q", site)
}

// pushAndWait pushes sources[i] to sites[i], all at once, and waits for
// the push to end.
func (s *Service) pushAndWait(ctx context.Context, sources, sites []string, o api.TransferOptions) (api.TransferInfo, error) {
	job, err := s.pushEach(ctx, newID(), sources, sites, o)
	if err != nil {
		return api.TransferInfo{}, err
	}
	info, err := job.Wait(ctx)
	if err != nil {
		job.cancel()
	}
	return info, err
}

// pullCycle runs one pull-based cycle at the archive site: when the disk's
// published root changed, it pulls the blocks this node lacks and keeps
// the root as a replica (stateName); a failed pull keeps none.
func (s *Service) pullCycle(ctx context.Context, p api.Policy, last cid.Cid, d catalog.Entry) {
	p.LastTry = s.clock.Now()
	defer func() { // with the settings and history saved; none when removed meanwhile
		if cur, ok := s.currentPolicy(p); ok {
			s.replicatedStates().prune(ctx, cur)
		}
	}()
	if !d.Root.Defined() || d.Root == lastSource(p) {
		p.LastError = ""
		s.savePolicy(p, last)
		return
	}
	owner, err := meshnet.ParsePeerID(d.Owner)
	sources := []meshnet.PeerID{}
	if err == nil && owner != s.self {
		sources = append(sources, owner)
	}
	for _, m := range s.cat.Live() {
		if id := meshnet.PeerID(m.ID); id != s.self && id != owner {
			sources = append(sources, id)
		}
	}
	name := stateName(p.Site, api.ModePull, p.LastTry)
	ref := volume.Ref{Disk: p.Disk, Replica: name}
	job, _, err := s.pull(ctx, "pull", newID(), ref, d, sources, p.Options)
	if err == nil {
		st, werr := job.Wait(ctx)
		if werr != nil {
			job.cancel()
			return
		}
		if State(st.State) != Done {
			err = fmt.Errorf("pull %s: %s %s", p.Disk, st.State, st.Error)
		} else {
			p.LastBytes = st.BytesSent
		}
	}
	if err != nil {
		p.LastError = err.Error()
		s.log.Warn("pull-based replication failed", "disk", p.Disk, "err", err)
		s.savePolicy(p, last)
		return
	}
	p.LastReplica, p.LastSuccess, p.LastSource, p.LastError = name, s.clock.Now(), d.Root.String(), ""
	p.TotalBytes += p.LastBytes
	p.Cycles++
	s.replicatedStates().publishReplicas(ctx, p.Disk, []string{name})
	s.savePolicy(p, d.Root)
}

// lastSource is the root p last replicated (api.Policy keeps it as text);
// cid.Undef when none.
func lastSource(p api.Policy) cid.Cid {
	c, err := cid.Decode(p.LastSource)
	if err != nil {
		return cid.Undef
	}
	return c
}
