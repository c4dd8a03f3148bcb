package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/weft-mesh/weft/api"
	"sort"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/datapath"
	"github.com/weft-mesh/weft/mesh"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/placement"
	"github.com/weft-mesh/weft/volume"
)

// TransferOptions is api.TransferOptions.
type TransferOptions = api.TransferOptions

// TransferInfo is api.TransferInfo.
type TransferInfo = api.TransferInfo

// TargetProgress is api.TargetProgress.
type TargetProgress = api.TargetProgress

// transfers is a node's registry of transfers, running and recent.
type transfers struct {
	n     *meshNode
	sched *datapath.Scheduler

	mu   sync.Mutex
	jobs map[string]*transferJob
}

type transferJob struct {
	mu     sync.Mutex
	info   TransferInfo
	cancel context.CancelFunc
	done   chan struct{}
}

func newTransferID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (t *transfers) add(info TransferInfo, cancel context.CancelFunc) *transferJob {
	j := &transferJob{info: info, cancel: cancel, done: make(chan struct{})}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.jobs == nil {
		t.jobs = map[string]*transferJob{}
	}
	t.jobs[info.ID] = j
	// Keep the last 100 finished transfers.
	var ended []*transferJob
	for _, o := range t.jobs {
		if o.snapshot().State != "running" {
			ended = append(ended, o)
		}
	}
	if len(ended) > 100 {
		sort.Slice(ended, func(a, b int) bool { return ended[a].snapshot().Started.Before(ended[b].snapshot().Started) })
		for _, o := range ended[:len(ended)-100] {
			delete(t.jobs, o.snapshot().ID)
		}
	}
	return j
}

func (j *transferJob) snapshot() TransferInfo {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.info
}

func (j *transferJob) update(fn func(*TransferInfo)) {
	j.mu.Lock()
	fn(&j.info)
	j.mu.Unlock()
}

// list returns every transfer, newest first.
func (t *transfers) list() []TransferInfo {
	t.mu.Lock()
	out := make([]TransferInfo, 0, len(t.jobs))
	for _, j := range t.jobs {
		out = append(out, j.snapshot())
	}
	t.mu.Unlock()
	sort.Slice(out, func(a, b int) bool { return out[a].Started.After(out[b].Started) })
	return out
}

func (t *transfers) get(id string) (*transferJob, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	j, ok := t.jobs[id]
	return j, ok
}

// cancel stops a running transfer.
func (t *transfers) cancelJob(id string) error {
	j, ok := t.get(id)
	if !ok {
		return fmt.Errorf("transfer %q: %w", id, volume.ErrNotFound)
	}
	j.cancel()
	return nil
}

// resolved is what a SOURCE argument names: a root and its shape.
type resolved struct {
	ref   volume.Ref
	entry catalog.Entry
}

// resolve finds SOURCE (DISK, DISK@REPLICA or NAME@N) in the catalog,
// committing a local disk first so a push sends what was written.
func (n *meshNode) resolve(ctx context.Context, source string) (resolved, error) {
	ref, err := volume.ParseRef(source)
	if err != nil {
		return resolved{}, err
	}
	if ref.Replica == "" {
		if _, err := n.vols.Commit(ctx, ref.Disk); err == nil {
			n.reconcile(ctx)
		}
	}
	e, ok := n.awaitCatalogEntry(ctx, ref)
	if !ok {
		return resolved{}, kindf(volume.ErrNotFound, "%s: not in the mesh's catalog", source)
	}
	if !e.Root.Defined() {
		return resolved{}, kindf(volume.ErrInvalid, "%s is empty: nothing to transfer", source)
	}
	return resolved{ref: ref, entry: e}, nil
}

// peerFor turns a TARGET or SOURCE (a site name, a peer ID or a multiaddr
// with /p2p/) into a live member; for a site, the member of that site
// closest to key.
func (n *meshNode) peerFor(target string, key cid.Cid) (meshnet.PeerID, error) {
	if id, err := meshnet.ParsePeerID(target); err == nil {
		return id, nil
	}
	if id, err := n.net.Learn(target); err == nil {
		return id, nil
	}
	site := n.sitePeers(target, key)
	switch {
	case len(site) == 0 && target == n.site:
		return "", kindf(volume.ErrInvalid, "target %q is this node's own site, with no other live member", target)
	case len(site) == 0:
		return "", kindf(volume.ErrNotFound, "target %q: not a peer ID, a multiaddr or a site with a live member", target)
	}
	return site[0], nil
}

// sitePeers returns the live members of site other than this node, closest
// to key first.
func (n *meshNode) sitePeers(site string, key cid.Cid) []meshnet.PeerID {
	var members []placement.Member
	for _, m := range n.net.Members() {
		if m.Site == site && m.ID != n.self && m.State == mesh.StateAlive {
			members = append(members, placement.Member{ID: string(m.ID), Site: m.Site})
		}
	}
	var out []meshnet.PeerID
	for _, m := range placement.Place(key.Hash(), members, len(members)) {
		out = append(out, meshnet.PeerID(m.ID))
	}
	return out
}

// checkTransferOptions refuses knobs out of range. It runs before any transfer is
// registered: a bad knob is a bad request, not a transfer that fails.
func checkTransferOptions(o TransferOptions) error {
	if o.Priority != "" {
		if _, err := datapath.ParsePriority(o.Priority); err != nil {
			return fmt.Errorf("%w: %w", err, volume.ErrInvalid)
		}
	}
	if o.BWLimit < 0 {
		return invalidf("bwlimit %d: must not be negative", o.BWLimit)
	}
	if o.BlockSize != 0 && (o.BlockSize < datapath.MinBlockSize || o.BlockSize > datapath.MaxBlockSize) {
		return invalidf("block size %d: must be from %d (64K) to %d (16M)", o.BlockSize, datapath.MinBlockSize, datapath.MaxBlockSize)
	}
	if o.Concurrency < 0 || o.Concurrency > datapath.MaxConcurrency {
		return invalidf("concurrency %d: must be 1 to %d", o.Concurrency, datapath.MaxConcurrency)
	}
	return nil
}

// transferSpec builds a datapath spec from options.
func transferSpec(id string, e catalog.Entry, sources []string, o TransferOptions) (datapath.Spec, error) {
	if err := checkTransferOptions(o); err != nil {
		return datapath.Spec{}, err
	}
	prio := datapath.Normal
	if o.Priority != "" {
		prio, _ = datapath.ParsePriority(o.Priority) // checked
	}
	return datapath.Spec{
		ID: id, Root: e.Root, Sources: sources, Priority: prio, BWLimit: float64(o.BWLimit),
		BlockSize: int(o.BlockSize), DiskBlockSize: e.BlockSize, Concurrency: o.Concurrency,
	}, nil
}

// errCancelled is the state of a transfer stopped by an operator.
var errCancelled = errors.New("transfer cancelled")

// background pulls what a new clone of e needs at very low priority, from
// the members that hold it; reads fetch on demand meanwhile, so the blocks
// a VM asks for jump ahead of this transfer.
func (n *meshNode) background(source string, e catalog.Entry) {
	ref, err := volume.ParseRef(source)
	if err != nil {
		return
	}
	var sources []meshnet.PeerID
	for _, m := range placement.Place(e.Root.Hash(), n.members(), len(n.members())) {
		if meshnet.PeerID(m.ID) != n.self {
			sources = append(sources, meshnet.PeerID(m.ID))
		}
	}
	if len(sources) == 0 {
		return
	}
	if _, _, err := n.pull(context.Background(), "background", newTransferID(), ref, e, sources, TransferOptions{Priority: "very-low"}); err != nil {
		n.log.Warn("background pull of a clone's source", "source", source, "err", err)
	}
}
