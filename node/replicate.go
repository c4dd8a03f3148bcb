package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

// Policy is a scheduled replication of a disk to a site, kept in the
// catalog (key replicate/DISK/SITE, its root the last replicated root) and
// run by the disk's owner. Field names are part of the CLI's JSON contract.
type Policy struct {
	Disk    string          `json:"disk"`
	Site    string          `json:"site"`
	Every   time.Duration   `json:"every"`
	Options TransferOptions `json:"options"`
	// Puller, if set, is the peer ID of a node at the site that pulls the
	// disk on the schedule (pull-based backup); otherwise the disk's owner
	// pushes it.
	Puller string `json:"puller,omitempty"`
	// Keep is how many replicated states (repl-SITE-* replicas) are kept;
	// older ones are removed after each cycle, on the owner and at the
	// site, so their blocks can be collected.
	Keep int `json:"keep"`

	// State of the last cycles.
	LastReplica string    `json:"last_replica,omitempty"` // DISK@LAST_REPLICA holds what the site has
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastSource  string    `json:"last_source,omitempty"` // the disk root that cycle replicated
	LastBytes   int64     `json:"last_bytes"`
	TotalBytes  int64     `json:"total_bytes"`
	Cycles      int64     `json:"cycles"`
	LastTry     time.Time `json:"last_try,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	// Lag is how old the site's copy is: the time since the replica it
	// holds was taken (0 when the disk has not changed since).
	Lag float64 `json:"lag_seconds"`
}

// ReplicateRequest is the body of POST /v1/replicate.
type ReplicateRequest struct {
	Disk string `json:"disk"`
	Site string `json:"site"` // "" with Pull: this node's site
	// Pull makes this node pull the disk to its own site on the schedule.
	Pull    bool            `json:"pull,omitempty"`
	Every   time.Duration   `json:"every"`
	Keep    int             `json:"keep,omitempty"` // 0: defaultReplicateKeep
	Options TransferOptions `json:"options"`
}

const (
	defaultReplicateEvery = 5 * time.Minute
	minReplicateEvery     = time.Second
	defaultReplicateKeep  = 3
	// replicaPrefix names the replicas replication takes.
	replicaPrefix = "repl-"
)

func decodePolicy(e catalog.Entry) (Policy, error) {
	var p Policy
	if err := json.Unmarshal(e.Policy, &p); err != nil {
		return p, fmt.Errorf("policy %s: %w", e.Key, err)
	}
	return p, nil
}

// setPolicy writes p to the catalog under the disk's current epoch.
func (n *meshNode) setPolicy(p Policy, root cid.Cid) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	key := catalog.ReplicateKey(p.Disk, p.Site)
	e, _ := n.cat.Get(key)
	e.Key, e.Owner, e.Root, e.Policy = key, n.selfStr, root, b
	_, err = n.publish(e)
	return err
}

// addPolicy stores a new or changed policy for a disk this node owns.
func (n *meshNode) addPolicy(req ReplicateRequest) (Policy, error) {
	d, ok := n.cat.Get(catalog.DiskKey(req.Disk))
	switch {
	case !ok:
		return Policy{}, fmt.Errorf("replicate %s: no such disk in the mesh: %w", req.Disk, volume.ErrNotFound)
	case req.Pull && d.Owner == n.selfStr:
		return Policy{}, fmt.Errorf("replicate %s --pull: this node owns the disk; pull from another site's node: %w", req.Disk, volume.ErrInvalid)
	case req.Pull && req.Site != "" && req.Site != n.site:
		return Policy{}, fmt.Errorf("replicate --pull keeps the copy at this node's site %q, not %q: %w", n.site, req.Site, volume.ErrInvalid)
	case req.Pull:
		req.Site = n.site
	case d.Owner != n.selfStr:
		return Policy{}, fmt.Errorf("replicate %s: not a disk this node owns (run it on the owner, or use --pull at the site): %w", req.Disk, volume.ErrNotFound)
	}
	if err := volume.ValidateName(req.Site); err != nil {
		return Policy{}, err
	}
	if req.Every == 0 {
		req.Every = defaultReplicateEvery
	}
	if req.Every < minReplicateEvery {
		return Policy{}, fmt.Errorf("replicate: --every %v is below %v: %w", req.Every, minReplicateEvery, volume.ErrInvalid)
	}
	if req.Keep == 0 {
		req.Keep = defaultReplicateKeep
	}
	if req.Keep < 1 {
		return Policy{}, fmt.Errorf("replicate: --keep %d: keep at least 1 replicated state: %w", req.Keep, volume.ErrInvalid)
	}
	if _, err := transferSpec("check", d, nil, req.Options); err != nil {
		return Policy{}, err
	}
	p := Policy{Disk: req.Disk, Site: req.Site, Every: req.Every, Keep: req.Keep, Options: req.Options}
	if req.Pull {
		p.Puller = n.selfStr
	}
	var root cid.Cid
	if e, ok := n.cat.Get(catalog.ReplicateKey(req.Disk, req.Site)); ok {
		if old, err := decodePolicy(e); err == nil { // keep the history
			old.Every, old.Keep, old.Options, old.Puller = p.Every, p.Keep, p.Options, p.Puller
			p, root = old, e.Root
		}
	}
	return p, n.setPolicy(p, root)
}

// policies lists every policy of the catalog, with its lag.
func (n *meshNode) policies() []Policy {
	out := []Policy{}
	for _, e := range n.cat.List(catalog.ReplicatePrefix) {
		p, err := decodePolicy(e)
		if err != nil {
			continue
		}
		if d, ok := n.cat.Get(catalog.DiskKey(p.Disk)); ok && rootText(d.Root) != p.LastSource && !p.LastSuccess.IsZero() {
			p.Lag = time.Since(p.LastSuccess).Seconds()
		}
		out = append(out, p)
	}
	return out
}

func (n *meshNode) removePolicy(disk, site string) error {
	e, ok := n.cat.Get(catalog.ReplicateKey(disk, site))
	if !ok {
		return fmt.Errorf("no replication of %s to %s: %w", disk, site, volume.ErrNotFound)
	}
	d, err := n.cat.Delete(e.Key, e.Epoch)
	if err != nil {
		return err
	}
	n.broadcast(d)
	return nil
}

// replicateLoop runs the due policies of the disks this node owns, one
// cycle at a time.
func (n *meshNode) replicateLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, e := range n.cat.List(catalog.ReplicatePrefix) {
			p, err := decodePolicy(e)
			if err != nil || time.Since(p.LastTry) < p.Every {
				continue
			}
			d, ok := n.cat.Get(catalog.DiskKey(p.Disk))
			switch {
			case !ok:
			case p.Puller == n.selfStr:
				n.pullCycle(ctx, p, e.Root, d)
			case p.Puller == "" && d.Owner == n.selfStr:
				n.cycle(ctx, p, e.Root)
			}
		}
	}
}

// cycle runs one replication: when the disk changed since the last
// success, it takes a replica and pushes it (only the blocks the site
// lacks) to the site.
func (n *meshNode) cycle(ctx context.Context, p Policy, last cid.Cid) {
	p.LastTry = time.Now()
	fail := func(err error) {
		p.LastError = err.Error()
		n.log.Warn("replication cycle failed", "disk", p.Disk, "site", p.Site, "err", err)
		if err := n.setPolicy(p, last); err != nil {
			n.log.Error("save policy", "err", err)
		}
	}
	info, err := n.vols.Commit(ctx, p.Disk)
	if err != nil {
		fail(err)
		return
	}
	if info.Root == "" || info.Root == p.LastSource {
		p.LastError = ""
		if err := n.setPolicy(p, last); err != nil {
			n.log.Error("save policy", "err", err)
		}
		return // nothing changed: nothing to send
	}
	rep, err := n.vols.CreateReplica(ctx, p.Disk, replicaPrefix+p.Site+"-"+time.Now().UTC().Format("20060102-150405"))
	if err != nil {
		fail(err)
		return
	}
	n.reconcile(ctx) // the replica in the catalog before the site asks for it
	job, err := n.push(ctx, newTransferID(), p.Disk+"@"+rep.Name, []string{p.Site}, p.Options)
	if err != nil {
		fail(err)
		return
	}
	select {
	case <-job.done:
	case <-ctx.Done():
		job.cancel()
		return
	}
	res := job.snapshot()
	if res.State != "done" {
		fail(fmt.Errorf("push %s: %s %s", rep.Name, res.State, res.Error))
		return
	}
	root, err := cid.Decode(rep.Root)
	if err != nil {
		fail(err)
		return
	}
	p.LastReplica, p.LastSuccess, p.LastSource = rep.Name, time.Now(), info.Root
	p.LastBytes, p.LastError = res.BytesSent, ""
	p.TotalBytes += res.BytesSent
	p.Cycles++
	if err := n.setPolicy(p, root); err != nil {
		n.log.Error("save policy", "err", err)
	}
	n.log.Info("replicated", "disk", p.Disk, "site", p.Site, "replica", rep.Name, "bytes", res.BytesSent)
	n.prune(ctx, p)
}

// prune removes the replicated states of p beyond the newest p.Keep that
// this node holds, never the last one. The catalog then tombstones them,
// and the site, which holds copies under the same names, removes its own.
func (n *meshNode) prune(ctx context.Context, p Policy) {
	keep := p.Keep
	if keep < 1 {
		keep = defaultReplicateKeep // a policy written before keep existed
	}
	reps, err := n.vols.ListReplicas(ctx, p.Disk)
	if err != nil {
		return
	}
	var names []string
	for _, r := range reps {
		if strings.HasPrefix(r.Name, replicaPrefix+p.Site+"-") && r.Name != p.LastReplica {
			names = append(names, r.Name)
		}
	}
	slices.Sort(names) // names end in a UTC time: oldest first
	removed := 0
	for _, name := range names[:max(0, len(names)-(keep-1))] {
		if err := n.vols.RemoveReplica(ctx, p.Disk, name); err != nil && !errors.Is(err, volume.ErrNotFound) {
			n.log.Error("prune replicated state", "disk", p.Disk, "replica", name, "err", err)
			continue
		}
		removed++
	}
	if removed > 0 {
		n.log.Info("pruned replicated states", "disk", p.Disk, "site", p.Site, "removed", removed, "keep", keep)
		n.reconcile(ctx)
	}
}

// pullCycle runs one pull-based cycle at the archive site: when the disk's
// published root changed, it pulls the blocks this node lacks and keeps
// the root as a replica named like the owner's cycles would.
func (n *meshNode) pullCycle(ctx context.Context, p Policy, last cid.Cid, d catalog.Entry) {
	p.LastTry = time.Now()
	src := rootText(d.Root)
	if src == "" || src == p.LastSource {
		if err := n.setPolicy(p, last); err != nil {
			n.log.Error("save policy", "err", err)
		}
		return
	}
	owner, err := peer.Decode(d.Owner)
	sources := []peer.ID{}
	if err == nil && owner != n.self {
		sources = append(sources, owner)
	}
	for _, m := range n.members() {
		if id := peer.ID(m.ID); id != n.self && id != owner {
			sources = append(sources, id)
		}
	}
	name := replicaPrefix + p.Site + "-" + time.Now().UTC().Format("20060102-150405")
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
	n.prune(ctx, p)
}

// recover brings disk back to the last state replicated to site: the
// replica is pulled back from the site if this node lacks it, and the head
// restored to it (the current head is kept as a backup replica first), or
// the disk re-created from it if it is gone.
func (n *meshNode) recoverDisk(ctx context.Context, disk, site string) (volume.DiskInfo, error) {
	last := n.lastReplicated(disk, site)
	if last == "" {
		return volume.DiskInfo{}, fmt.Errorf("recover %s: nothing replicated to %s: %w", disk, site, volume.ErrNotFound)
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
// replicated to site: the policy's, or (the policy removed) the newest
// replica replication took for that site.
func (n *meshNode) lastReplicated(disk, site string) string {
	if e, ok := n.cat.Get(catalog.ReplicateKey(disk, site)); ok {
		if p, err := decodePolicy(e); err == nil && p.LastReplica != "" {
			return p.LastReplica
		}
	}
	var last string
	prefix := catalog.ReplicaPrefix + disk + "/" + replicaPrefix + site + "-"
	for _, e := range n.cat.List(prefix) {
		last = max(last, strings.TrimPrefix(e.Key, catalog.ReplicaPrefix+disk+"/")) // names end in a UTC time
	}
	return last
}
