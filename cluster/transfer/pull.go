package transfer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/datapath"
	"github.com/weft-mesh/weft/internal/errkind"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/placement"
	"github.com/weft-mesh/weft/volume"
)

// progressEvery is how often a running transfer's figures are refreshed.
const progressEvery = 250 * time.Millisecond

// Start starts req: a push (Targets) or a pull (From). The transfer is
// journaled until it ends, so that a daemon stopped in the middle resumes
// it at its next start.
func (s *Service) Start(ctx context.Context, req api.TransferRequest) (*Job, error) {
	return s.startJournaled(ctx, newID(), req)
}

// start starts req under id.
func (s *Service) start(ctx context.Context, id string, req api.TransferRequest) (*Job, error) {
	switch {
	case len(req.Targets) > 0 && req.From == "":
		return s.push(ctx, id, req.Source, req.Targets, req.Options)
	case len(req.Targets) == 0 && req.From != "":
		return s.pullFrom(ctx, id, req)
	}
	return nil, invalidf("transfer: give targets (push) or from (pull), not both")
}

// pullFrom starts a pull of req.Source from a peer, or from every live
// member of a site.
func (s *Service) pullFrom(ctx context.Context, id string, req api.TransferRequest) (*Job, error) {
	if err := checkOptions(req.Options); err != nil {
		return nil, err
	}
	ref, err := volume.ParseRef(req.Source)
	if err != nil {
		return nil, err
	}
	e, ok := s.cat.AwaitEntry(ctx, ref)
	switch {
	case !ok:
		return nil, errkind.Errorf(volume.ErrNotFound, "pull %s: not in the mesh's catalog", req.Source)
	case !e.Root.Defined():
		return nil, errkind.Errorf(volume.ErrInvalid, "pull %s: it is empty: nothing to transfer", req.Source)
	}
	sources := s.cat.SitePeers(req.From, e.Root)
	if len(sources) == 0 { // not a site: a peer ID or a multiaddr
		p, err := s.peerFor(req.From, e.Root)
		if err != nil {
			return nil, err
		}
		sources = []meshnet.PeerID{p}
	}
	job, _, err := s.pull(ctx, "pull", id, ref, e, sources, req.Options)
	return job, err
}

// pull runs a transfer here: it fetches e's blocks from sources and keeps
// the root under ref when done. It returns once the transfer is registered.
// A pull an operator or a pull policy asks for joins the crowd of the
// first source, the origin: the other nodes pulling the root from it now.
func (s *Service) pull(ctx context.Context, kind, id string, ref volume.Ref, e catalog.Entry, sources []meshnet.PeerID, o api.TransferOptions) (*Job, *datapath.Transfer, error) {
	spec, err := transferSpec(id, e, peerStrings(sources), o)
	if err != nil {
		return nil, nil, err
	}
	if kind == "pull" && len(sources) > 0 {
		return s.pullInCrowd(ctx, kind, ref, e, spec, sources[0])
	}
	return s.runPull(ctx, kind, ref, e, spec)
}

// peerStrings names peers as datapath does: by their raw IDs.
func peerStrings(ps []meshnet.PeerID) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = string(p)
	}
	return out
}

// runPull runs the transfer spec describes, as pull does.
func (s *Service) runPull(ctx context.Context, kind string, ref volume.Ref, e catalog.Entry, spec datapath.Spec) (*Job, *datapath.Transfer, error) {
	id := spec.ID
	spec.Logger = s.log // a dropped peer or a lagging swarm member is worth a line
	if err := s.partial.add(e.Root); err != nil {
		return nil, nil, err
	}
	tctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	info := api.TransferInfo{ID: id, Kind: kind, Source: ref.String(), Root: e.Root.String(), State: string(Running),
		Priority: spec.Priority.String(), Started: s.clock.Now()}
	job := s.add(info, cancel)
	t := datapath.Start(tctx, spec, s.blocks, s.store, s.sched)
	go func() {
		defer close(job.done)
		defer cancel()
		tick := s.clock.NewTicker(progressEvery)
		defer tick.Stop()
		finished := make(chan struct{})
		var p datapath.Progress
		var werr error
		go func() { p, werr = t.Wait(context.Background()); close(finished) }()
		for {
			select {
			case <-tick.C():
				job.update(func(i *api.TransferInfo) { fillFromProgress(i, t.Progress()) })
				continue
			case <-finished:
			}
			break
		}
		if werr == nil && State(p.State) == Done {
			if err := s.keep(context.Background(), ref, e, kind); err != nil {
				werr = err
				p.State, p.Error = string(Failed), err.Error()
			} else if err := s.partial.done(e.Root); err != nil {
				s.log.Warn("forget a finished transfer", "root", e.Root, "err", err)
			}
		}
		job.update(func(i *api.TransferInfo) { fillFromProgress(i, p); i.Ended = s.clock.Now() })
		s.log.Info("transfer ended", "id", id, "kind", kind, "source", ref.String(), "state", p.State,
			"bytes", p.DoneBytes, "skipped_blocks", p.SkippedBlocks, "err", werr)
	}()
	return job, t, nil
}

func fillFromProgress(i *api.TransferInfo, p datapath.Progress) {
	i.State, i.Error = p.State, p.Error
	i.BytesSent, i.BlocksSent, i.TotalBytes = p.DoneBytes, p.DoneBlocks, p.TotalBytes
	i.Rate, i.ETA = p.Rate, p.ETA.Seconds()
	i.BytesFrom = namedBytes(p.BytesFrom)
	i.Skipped = p.SkippedBlocks
}

// namedBytes names the peers of a per-peer map as the API does (base58).
func namedBytes(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[meshnet.PeerID(k).String()] = v
	}
	return out
}

// keep records a transferred root on this node so GC and heal keep its
// blocks here: a spacesuit version as itself, a replica under its name,
// a disk head as a replica named after the transfer's kind and time.
// Transfer names of one second are told apart by a suffix (-2, -3, …); a
// replica that exists already counts as kept only if it holds this root.
func (s *Service) keep(ctx context.Context, ref volume.Ref, e catalog.Entry, kind string) error {
	if name, v, err := volume.ParseSpacesuitRef(ref.String()); err == nil {
		if _, ok := s.record(catalog.SpacesuitKey(name, v)); ok {
			err := s.vols.KeepSpacesuit(ctx, volume.SpacesuitInfo{Name: name, Version: v, Size: e.Size,
				BlockSize: e.BlockSize, Created: e.Created}, e.Root)
			if errors.Is(err, volume.ErrExists) {
				return nil
			}
			return err
		}
	}
	now := s.clock.Now().UTC()
	base, tries := ref.Replica, 1
	if base == "" {
		base, tries = kind+"-"+now.Format("20060102-150405"), maxKeepTries
	}
	var err error
	for i := range tries {
		name := base
		if i > 0 {
			name = fmt.Sprintf("%s-%d", base, i+1)
		}
		err = s.vols.AddReplica(ctx, volume.ReplicaInfo{Disk: ref.Disk, Name: name, Size: e.Size, BlockSize: e.BlockSize, Created: now}, e.Root)
		if !errors.Is(err, volume.ErrExists) {
			return err
		}
		if s.holds(ref.Disk, name, e) {
			return nil
		}
	}
	return fmt.Errorf("keep %s: %w", ref, err)
}

// maxKeepTries bounds the names keep tries for the transfers of one disk
// head in one second.
const maxKeepTries = 100

// holds reports whether this node's volumes hold replica name of disk
// with e's root.
func (s *Service) holds(disk, name string, e catalog.Entry) bool {
	for _, r := range s.vols.Records() {
		if r.Disk == disk && r.Replica == name && !r.Spacesuit {
			return r.Root == e.Root
		}
	}
	return false
}

// record returns the live catalog record of key.
func (s *Service) record(key string) (catalog.Entry, bool) {
	for _, e := range s.cat.List(key) {
		if e.Key == key {
			return e, true
		}
	}
	return catalog.Entry{}, false
}

// background pulls what a new clone of e needs at very low priority, from
// the members that hold it; reads fetch on demand meanwhile, so the blocks
// a VM asks for jump ahead of this transfer.
func (s *Service) background(source string, e catalog.Entry) {
	ref, err := volume.ParseRef(source)
	if err != nil {
		return
	}
	live := s.cat.Live()
	var sources []meshnet.PeerID
	for _, m := range placement.Place(e.Root.Hash(), live, len(live)) {
		if meshnet.PeerID(m.ID) != s.self {
			sources = append(sources, meshnet.PeerID(m.ID))
		}
	}
	if len(sources) == 0 {
		return
	}
	if _, _, err := s.pull(context.Background(), "background", newID(), ref, e, sources, api.TransferOptions{Priority: "very-low"}); err != nil {
		s.log.Warn("background pull of a clone's source", "source", source, "err", err)
	}
}

// Clone clones a disk, replica or spacesuit this node does not hold: the
// clone starts at once from the catalog's root; its blocks are fetched on
// first read, and a background pull brings the rest. The new disk records
// src as its origin and creator as its creator (volume.DiskSpec.Creator).
func (s *Service) Clone(ctx context.Context, src volume.Ref, name, creator string) (volume.DiskInfo, error) {
	e, ok := s.cat.Entry(src)
	if !ok {
		return volume.DiskInfo{}, errkind.Errorf(volume.ErrNotFound, "%s: not in this node's volumes nor in the mesh", src)
	}
	spec := volume.DiskSpec{Name: name, Size: e.Size, BlockSize: e.BlockSize, Replicas: max(e.Replicas, 1), Origin: src.String(), Creator: creator}
	info, err := s.vols.CreateDiskAt(ctx, spec, e.Root)
	if err != nil {
		return info, err
	}
	s.background(src.String(), e)
	return info, nil
}
