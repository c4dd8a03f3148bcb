package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/mesh"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/volume"
)

// dropTimeout bounds the removal of a failed cycle's replica, which runs
// even when the cycle was cut short by the daemon stopping.
const dropTimeout = 10 * time.Second

// setPolicy writes p to the catalog under the disk's current epoch.
func (n *meshNode) setPolicy(p Policy, root cid.Cid) error {
	p.Status, p.Lag = "", nil // worked out when listed
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	key := policyKey(p)
	e, _ := n.cat.Get(key)
	e.Key, e.Owner, e.Root, e.Policy = key, n.selfStr, root, b
	_, err = n.publish(e)
	return err
}

// policyRecord is a policy with the catalog entry holding it.
type policyRecord struct {
	entry  catalog.Entry
	policy Policy
}

// policyRecords returns the policies replicating disk to site: a push, a
// pull, or both.
func (n *meshNode) policyRecords(disk, site string) []policyRecord {
	var out []policyRecord
	for _, key := range []string{catalog.ReplicateKey(disk, site), catalog.ReplicatePullKey(disk, site)} {
		if e, ok := n.cat.Get(key); ok {
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
func (n *meshNode) movePullRecord(r policyRecord) error {
	if r.entry.Key == policyKey(r.policy) {
		return nil
	}
	if err := n.setPolicy(r.policy, r.entry.Root); err != nil {
		return fmt.Errorf("move policy %s: %w", r.entry.Key, err)
	}
	d, err := n.cat.Delete(r.entry.Key, r.entry.Epoch)
	if err != nil {
		return fmt.Errorf("move policy %s: %w", r.entry.Key, err)
	}
	n.broadcast(d)
	return nil
}

// addPolicy stores a new or changed policy for a disk this node owns, or,
// for a pull, of this node's site.
func (n *meshNode) addPolicy(req ReplicateRequest) (Policy, error) {
	d, ok := n.cat.Get(catalog.DiskKey(req.Disk))
	if !ok {
		return Policy{}, kindf(volume.ErrNotFound, "replicate %s: no such disk in the mesh", req.Disk)
	}
	p, err := checkPolicy(req, d, n.selfStr, n.site, n.net.Members())
	if err != nil {
		return Policy{}, err
	}
	var root cid.Cid
	for _, r := range n.policyRecords(p.Disk, p.Site) {
		if err := n.movePullRecord(r); err != nil {
			return Policy{}, err
		}
		if r.policy.Mode == p.Mode { // keep the history
			old := r.policy
			old.Every, old.Keep, old.Options, old.Puller = p.Every, p.Keep, p.Options, p.Puller
			p, root = old, r.entry.Root
		}
	}
	return p, n.setPolicy(p, root)
}

// policies lists every policy of the catalog, with its status and lag.
func (n *meshNode) policies() []Policy {
	out := []Policy{}
	now := time.Now()
	for _, e := range n.cat.List(catalog.ReplicatePrefix) {
		p, err := decodePolicy(e)
		if err != nil {
			continue
		}
		d, ok := n.cat.Get(catalog.DiskKey(p.Disk))
		out = append(out, withStatus(p, d, ok, now))
	}
	return out
}

// removePolicy removes the policy replicating disk to site by mode ("":
// the only one there is) and names the replicated states it leaves.
func (n *meshNode) removePolicy(disk, site, mode string) (PolicyRemoval, error) {
	if mode != "" && mode != ModePush && mode != ModePull {
		return PolicyRemoval{}, fmt.Errorf("mode %q: want %s or %s: %w", mode, ModePush, ModePull, volume.ErrInvalid)
	}
	var found []policyRecord
	for _, r := range n.policyRecords(disk, site) {
		if mode == "" || r.policy.Mode == mode {
			found = append(found, r)
		}
	}
	switch {
	case len(found) == 0 && mode != "":
		return PolicyRemoval{}, kindf(volume.ErrNotFound, "no %s replication of %s to %s", mode, disk, site)
	case len(found) == 0:
		return PolicyRemoval{}, kindf(volume.ErrNotFound, "no replication of %s to %s", disk, site)
	case len(found) > 1:
		return PolicyRemoval{}, fmt.Errorf("both a push and a pull policy replicate %s to %s: say which with --mode %s or --mode %s: %w",
			disk, site, ModePush, ModePull, volume.ErrInvalid)
	}
	r := found[0]
	d, err := n.cat.Delete(r.entry.Key, r.entry.Epoch)
	if err != nil {
		return PolicyRemoval{}, err
	}
	n.broadcast(d)
	out := PolicyRemoval{Policy: r.policy, Kept: []string{}}
	prefix := catalog.ReplicaPrefix + disk + "/"
	for _, e := range n.cat.List(prefix) {
		if name := strings.TrimPrefix(e.Key, prefix); isStateOf(r.policy, name) {
			out.Kept = append(out.Kept, name)
		}
	}
	return out, nil
}

// replicateLoop runs the due policies of the disks this node owns, and the
// pull policies this node runs, one cycle at a time; the push policies of
// one disk that fall due together run as one cycle (pushGroups).
func (n *meshNode) replicateLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var pushes []policyRecord
		for _, e := range n.cat.List(catalog.ReplicatePrefix) {
			p, err := decodePolicy(e)
			if err != nil {
				continue
			}
			d, ok := n.cat.Get(catalog.DiskKey(p.Disk))
			switch {
			case !ok:
			case p.Puller == "" && d.Owner == n.selfStr:
				pushes = append(pushes, policyRecord{e, p})
			case p.Puller == n.selfStr && time.Since(p.LastTry) >= p.Every:
				if err := n.movePullRecord(policyRecord{e, p}); err != nil {
					n.log.Error("move a pull policy to its own key", "err", err)
					continue
				}
				n.pullCycle(ctx, p, e.Root, d)
			}
		}
		for _, g := range pushGroups(pushes, time.Now()) {
			n.cycle(ctx, g)
		}
	}
}

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
		opts TransferOptions
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
	// publish brings the catalog in line with this node's replicas: a new
	// one named, a removed one tombstoned (and so removed at the site).
	publish func(ctx context.Context)
	log     *slog.Logger
}

func (n *meshNode) replicatedStates() replicatedStates {
	return replicatedStates{vols: n.vols, publish: n.reconcile, log: n.log}
}

// prune removes the replicated states of p beyond the newest p.Keep that
// this node holds (surplusStates). The catalog then tombstones them, and
// the site, which holds copies under the same names, removes its own.
func (s replicatedStates) prune(ctx context.Context, p Policy) {
	reps, err := s.vols.ListReplicas(ctx, p.Disk)
	if err != nil {
		return
	}
	names := make([]string, len(reps))
	for i, r := range reps {
		names[i] = r.Name
	}
	removed := 0
	for _, name := range surplusStates(p, names) {
		if err := s.vols.RemoveReplica(ctx, p.Disk, name); err != nil && !errors.Is(err, volume.ErrNotFound) {
			s.log.Error("prune replicated state", "disk", p.Disk, "replica", name, "err", err)
			continue
		}
		removed++
	}
	if removed > 0 {
		s.log.Info("pruned replicated states", "disk", p.Disk, "site", p.Site, "mode", p.Mode, "removed", removed, "keep", p.Keep)
		s.publish(ctx)
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
	send func(ctx context.Context, sources, sites []string, o TransferOptions) (TransferInfo, error)
	now  func() time.Time
}

// run runs one cycle of p, whose site holds root last (runAll of one).
func (c pushCycle) run(ctx context.Context, p Policy, last cid.Cid) (Policy, cid.Cid) {
	ps, roots := c.runAll(ctx, []Policy{p}, []cid.Cid{last})
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
func (c pushCycle) runAll(ctx context.Context, ps []Policy, lasts []cid.Cid) ([]Policy, []cid.Cid) {
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
		if info.Root == "" || info.Root == p.LastSource {
			ps[i].LastError = "" // nothing changed: nothing to send
			continue
		}
		if err := c.reachable(p.Site); err != nil {
			fail(i, err)
			continue
		}
		rep, err := c.stateFor(ctx, disk, stateName(p.Site, ModePush, now), reps)
		if err != nil {
			fail(i, err)
			continue
		}
		due, reps = append(due, i), append(reps, rep)
	}
	if len(due) == 0 {
		return ps, lasts
	}
	c.publish(ctx) // the replicas in the catalog before the sites ask for them
	sources, sites := make([]string, len(due)), make([]string, len(due))
	for k, i := range due {
		sources[k], sites[k] = disk+"@"+reps[k].Name, ps[i].Site
	}
	res, err := c.send(ctx, sources, sites, ps[due[0]].Options)
	dropped := false
	for k, i := range due {
		p := &ps[i]
		tp, terr := TargetProgress{}, err
		if terr == nil && k < len(res.Targets) {
			tp = res.Targets[k]
		} else if terr == nil {
			terr = fmt.Errorf("push %s to %s: no report of the site", reps[k].Name, p.Site)
		}
		if terr == nil && tp.State != "done" {
			terr = fmt.Errorf("push %s to %s: %s: %s", reps[k].Name, p.Site, tp.State, tp.Error)
		}
		root, derr := cid.Decode(reps[k].Root)
		if terr == nil {
			terr = derr
		}
		if terr != nil {
			c.remove(ctx, disk, reps[k].Name)
			dropped = true
			fail(i, terr)
			continue
		}
		p.LastReplica, p.LastSuccess, p.LastSource = reps[k].Name, c.now(), info.Root
		p.LastBytes, p.LastError = tp.Bytes, ""
		p.TotalBytes += tp.Bytes
		p.Cycles++
		lasts[i] = root
		c.log.Info("replicated", "disk", disk, "site", p.Site, "replica", reps[k].Name, "bytes", tp.Bytes, "sites_at_once", len(due))
	}
	if dropped { // tombstoned: a site that kept a copy drops it too
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dropTimeout)
		c.publish(pctx)
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
	root, err := cid.Decode(first.Root)
	if err != nil {
		return volume.ReplicaInfo{}, fmt.Errorf("replica %s: root %q: %w", first.Name, first.Root, err)
	}
	rep := volume.ReplicaInfo{Disk: disk, Name: name, Size: first.Size, BlockSize: first.BlockSize, Created: first.Created, Root: first.Root}
	if err := c.vols.AddReplica(ctx, rep, root); err != nil {
		return volume.ReplicaInfo{}, err
	}
	return rep, nil
}

// cycle runs one cycle of push policies ps of one disk (coalesce) and
// prunes what each keeps, failed or not, so that --keep bounds the
// replicas a policy leaves.
func (n *meshNode) cycle(ctx context.Context, ps []policyRecord) {
	c := pushCycle{replicatedStates: n.replicatedStates(), reachable: n.siteReachable, send: n.pushAndWait, now: time.Now}
	policies, lasts := make([]Policy, len(ps)), make([]cid.Cid, len(ps))
	for i, r := range ps {
		policies[i], lasts[i] = r.policy, r.entry.Root
	}
	policies, lasts = c.runAll(ctx, policies, lasts)
	for i, p := range policies {
		if err := n.setPolicy(p, lasts[i]); err != nil {
			n.log.Error("save policy", "err", err)
		}
		c.prune(ctx, p)
	}
}

// siteReachable says why this node cannot push to site now.
func (n *meshNode) siteReachable(site string) error {
	if site == n.site {
		return fmt.Errorf("the disk's owner is at site %q itself: %w", site, volume.ErrInvalid)
	}
	for _, m := range n.net.Members() {
		if m.Site == site && m.ID != n.self && m.State == mesh.StateAlive {
			return nil
		}
	}
	return kindf(volume.ErrNotFound, "no live member at site %q", site)
}

// pushAndWait pushes sources[i] to sites[i], all at once, and waits for
// the push to end.
func (n *meshNode) pushAndWait(ctx context.Context, sources, sites []string, o TransferOptions) (TransferInfo, error) {
	job, err := n.pushEach(ctx, newTransferID(), sources, sites, o)
	if err != nil {
		return TransferInfo{}, err
	}
	select {
	case <-job.done:
		return job.snapshot(), nil
	case <-ctx.Done():
		job.cancel()
		return TransferInfo{}, ctx.Err()
	}
}

// pullCycle runs one pull-based cycle at the archive site: when the disk's
// published root changed, it pulls the blocks this node lacks and keeps
// the root as a replica (stateName); a failed pull keeps none.
func (n *meshNode) pullCycle(ctx context.Context, p Policy, last cid.Cid, d catalog.Entry) {
	p.LastTry = time.Now()
	defer func() { n.replicatedStates().prune(ctx, p) }()
	src := rootText(d.Root)
	if src == "" || src == p.LastSource {
		p.LastError = ""
		if err := n.setPolicy(p, last); err != nil {
			n.log.Error("save policy", "err", err)
		}
		return
	}
	owner, err := meshnet.ParsePeerID(d.Owner)
	sources := []meshnet.PeerID{}
	if err == nil && owner != n.self {
		sources = append(sources, owner)
	}
	for _, m := range n.members() {
		if id := meshnet.PeerID(m.ID); id != n.self && id != owner {
			sources = append(sources, id)
		}
	}
	name := stateName(p.Site, ModePull, p.LastTry)
	ref := volume.Ref{Disk: p.Disk, Replica: name}
	job, _, err := n.pull(ctx, "pull", newTransferID(), ref, d, sources, p.Options)
	if err == nil {
		select {
		case <-job.done:
		case <-ctx.Done():
			job.cancel()
			return
		}
		if st := job.snapshot(); st.State != "done" {
			err = fmt.Errorf("pull %s: %s %s", p.Disk, st.State, st.Error)
		} else {
			p.LastBytes = st.BytesSent
		}
	}
	if err != nil {
		p.LastError = err.Error()
		n.log.Warn("pull-based replication failed", "disk", p.Disk, "err", err)
		if err := n.setPolicy(p, last); err != nil {
			n.log.Error("save policy", "err", err)
		}
		return
	}
	p.LastReplica, p.LastSuccess, p.LastSource, p.LastError = name, time.Now(), src, ""
	p.TotalBytes += p.LastBytes
	p.Cycles++
	n.reconcile(ctx) // publish the kept replica
	if err := n.setPolicy(p, d.Root); err != nil {
		n.log.Error("save policy", "err", err)
	}
}

// recover brings disk back to the last state replicated to site: the
// replica is pulled back from the site if this node lacks it, and the head
// restored to it (the current head is kept as a backup replica first), or
// the disk re-created from it if it is gone.
func (n *meshNode) recoverDisk(ctx context.Context, disk, site string) (volume.DiskInfo, error) {
	last := n.lastReplicated(disk, site)
	if last == "" {
		return volume.DiskInfo{}, kindf(volume.ErrNotFound, "recover %s: nothing replicated to %s", disk, site)
	}
	ref := volume.Ref{Disk: disk, Replica: last}
	if v, err := n.vols.OpenView(ctx, ref); err == nil {
		v.Close() // held here already: nothing to fetch
	} else {
		if !errors.Is(err, volume.ErrNotFound) {
			return volume.DiskInfo{}, err
		}
		job, err := n.pullFrom(ctx, newTransferID(), TransferRequest{Source: ref.String(), From: site})
		if err != nil {
			return volume.DiskInfo{}, err
		}
		select {
		case <-job.done:
		case <-ctx.Done():
			job.cancel()
			return volume.DiskInfo{}, ctx.Err()
		}
		if st := job.snapshot(); st.State != "done" {
			return volume.DiskInfo{}, fmt.Errorf("recover %s: pull from %s %s: %s", disk, site, st.State, st.Error)
		}
	}
	if _, err := n.vols.Head(disk); errors.Is(err, volume.ErrNotFound) {
		return n.vols.Clone(ctx, ref, disk)
	}
	res, err := n.vols.Restore(ctx, disk, last)
	return res.Disk, err
}

// lastReplicated names the replica holding the last state of disk
// replicated to site: the newest of its policies' (push and pull), or
// (the policies removed) the newest replica replication took for that
// site.
func (n *meshNode) lastReplicated(disk, site string) string {
	var last string
	var lastTime time.Time
	consider := func(name string) {
		if s, _, t, ok := parseStateName(name); ok && s == site && t.After(lastTime) {
			last, lastTime = name, t
		}
	}
	for _, r := range n.policyRecords(disk, site) {
		consider(r.policy.LastReplica)
	}
	if last != "" {
		return last
	}
	prefix := catalog.ReplicaPrefix + disk + "/"
	for _, e := range n.cat.List(prefix) {
		consider(strings.TrimPrefix(e.Key, prefix))
	}
	return last
}
