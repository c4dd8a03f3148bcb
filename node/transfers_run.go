package node

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/weft-mesh/weft/datapath"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/volume"
)

// transferProtocol asks a member to receive a root: the pusher sends one
// JSON request, the receiver pulls the blocks (from the pusher and the
// other receivers) and streams JSON progress lines until it ends. Closing
// the stream cancels the receiver's pull.
const transferProtocol = "/weft/transfer/1.0.0"

const (
	maxTransferRequest = 64 << 10
	progressEvery      = 250 * time.Millisecond
)

// receiveRequest is what a pusher sends a receiver.
type receiveRequest struct {
	ID      string   `json:"id"`
	Source  string   `json:"source"`  // the ref, for the receiver's records
	Entry   []byte   `json:"entry"`   // the catalog entry naming the root (catalog.Encode)
	Sources []string `json:"sources"` // peer IDs to fetch from: the pusher, then the other receivers
	// Swarm lists every receiver of the push, this one included, in the
	// same order for all: they split the blocks to fetch from the pusher
	// among themselves and fetch the rest from each other
	// (datapath.Spec.Swarm). Pushers before it sent none.
	Swarm   []string        `json:"swarm,omitempty"`
	Options TransferOptions `json:"options"`
}

// pull runs a transfer here: it fetches e's blocks from sources and keeps
// the root under ref when done. It returns once the transfer is registered.
// A pull an operator or a pull policy asks for joins the crowd of the
// first source, the origin: the other nodes pulling the root from it now.
func (n *meshNode) pull(ctx context.Context, kind, id string, ref volume.Ref, e catalog.Entry, sources []meshnet.PeerID, o TransferOptions) (*transferJob, *datapath.Transfer, error) {
	spec, err := transferSpec(id, e, peerStrings(sources), o)
	if err != nil {
		return nil, nil, err
	}
	if kind == "pull" && len(sources) > 0 {
		return n.pullInCrowd(ctx, kind, ref, e, spec, sources[0])
	}
	return n.runPull(ctx, kind, ref, e, spec)
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
func (n *meshNode) runPull(ctx context.Context, kind string, ref volume.Ref, e catalog.Entry, spec datapath.Spec) (*transferJob, *datapath.Transfer, error) {
	id := spec.ID
	spec.Logger = n.log // a dropped peer or a lagging swarm member is worth a line
	if err := n.partial.add(e.Root); err != nil {
		return nil, nil, err
	}
	tctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	info := TransferInfo{ID: id, Kind: kind, Source: ref.String(), Root: e.Root.String(), State: "running",
		Priority: spec.Priority.String(), Started: time.Now()}
	job := n.transfers.add(info, cancel)
	t := datapath.Start(tctx, spec, n.blocks, n.local, n.transfers.sched)
	go func() {
		defer close(job.done)
		defer cancel()
		tick := time.NewTicker(progressEvery)
		defer tick.Stop()
		finished := make(chan struct{})
		var p datapath.Progress
		var werr error
		go func() { p, werr = t.Wait(context.Background()); close(finished) }()
		for {
			select {
			case <-tick.C:
				job.update(func(i *TransferInfo) { fillFromProgress(i, t.Progress()) })
				continue
			case <-finished:
			}
			break
		}
		if werr == nil && p.State == "done" {
			if err := n.keep(context.Background(), ref, e, kind); err != nil {
				werr = err
				p.State, p.Error = "failed", err.Error()
			} else if err := n.partial.done(e.Root); err != nil {
				n.log.Warn("forget a finished transfer", "root", e.Root, "err", err)
			}
		}
		job.update(func(i *TransferInfo) { fillFromProgress(i, p); i.Ended = time.Now() })
		n.log.Info("transfer ended", "id", id, "kind", kind, "source", ref.String(), "state", p.State,
			"bytes", p.DoneBytes, "skipped_blocks", p.SkippedBlocks, "err", werr)
	}()
	return job, t, nil
}

func fillFromProgress(i *TransferInfo, p datapath.Progress) {
	i.State, i.Error = p.State, p.Error
	i.BytesSent, i.BlocksSent, i.TotalBytes = p.DoneBytes, p.DoneBlocks, p.TotalBytes
	i.Rate, i.ETA = p.Rate, p.ETA.Seconds()
	i.BytesFrom = namedBytes(p.BytesFrom)
	i.Skipped = p.SkippedBlocks
}

// namedBytes prints the peers of a per-peer map as libp2p does.
func namedBytes(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[meshnet.PeerID(k).String()] = v
	}
	return out
}

// keep records a transferred root on this node so GC and heal keep its
// blocks here: a spacesuit version as itself, a replica under its name,
// a disk head as a replica named after the transfer.
func (n *meshNode) keep(ctx context.Context, ref volume.Ref, e catalog.Entry, kind string) error {
	if name, v, err := volume.ParseSpacesuitRef(ref.String()); err == nil {
		if _, ok := n.cat.Get(catalog.SpacesuitKey(name, v)); ok {
			err := n.vols.KeepSpacesuit(ctx, volume.SpacesuitInfo{Name: name, Version: v, Size: e.Size,
				BlockSize: e.BlockSize, Created: e.Created}, e.Root)
			if errors.Is(err, volume.ErrExists) {
				return nil
			}
			return err
		}
	}
	rep := ref.Replica
	if rep == "" {
		rep = kind + "-" + time.Now().UTC().Format("20060102-150405")
	}
	err := n.vols.AddReplica(ctx, volume.ReplicaInfo{Disk: ref.Disk, Name: rep, Size: e.Size, BlockSize: e.BlockSize, Created: time.Now().UTC()}, e.Root)
	if errors.Is(err, volume.ErrExists) {
		return nil
	}
	return err
}

// push sends source to every target at once: each receives from this node
// and from the other targets (a swarm).
func (n *meshNode) push(ctx context.Context, id, source string, targets []string, o TransferOptions) (*transferJob, error) {
	sources := make([]string, len(targets))
	for i := range sources {
		sources[i] = source
	}
	return n.pushEach(ctx, id, sources, targets, o)
}

// pushEach sends sources[i] to targets[i], every target at once in one
// swarm: the sources name one root (replicas of one state under the
// names each site keeps), so the targets fetch it from this node and from
// each other as they would one source.
func (n *meshNode) pushEach(ctx context.Context, id string, sources, targets []string, o TransferOptions) (*transferJob, error) {
	if len(sources) != len(targets) || len(targets) == 0 {
		return nil, fmt.Errorf("push: %d sources for %d targets: %w", len(sources), len(targets), volume.ErrInvalid)
	}
	refs := make([]resolved, len(sources))
	for i, source := range sources {
		r, err := n.resolve(ctx, source)
		if err != nil {
			return nil, err
		}
		if i > 0 && r.entry.Root != refs[0].entry.Root {
			return nil, fmt.Errorf("push: %s and %s name different roots: %w", sources[0], source, volume.ErrInvalid)
		}
		refs[i] = r
	}
	r := refs[0]
	if _, err := transferSpec("check", r.entry, nil, o); err != nil {
		return nil, err
	}
	var err error
	peers := make([]meshnet.PeerID, len(targets))
	for i, t := range targets {
		if peers[i], err = n.peerFor(t, r.entry.Root); err != nil {
			return nil, err
		}
		if peers[i] == n.self {
			return nil, fmt.Errorf("target %q is this node: %w", t, volume.ErrInvalid)
		}
	}
	entries := make([][]byte, len(refs))
	for i, ri := range refs {
		if entries[i], err = catalog.Encode([]catalog.Entry{ri.entry}); err != nil {
			return nil, err
		}
	}
	source := r.ref.String()
	if slices.ContainsFunc(sources, func(s string) bool { return s != sources[0] }) {
		source = strings.Join(sources, ",")
	}
	tctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	prio := o.Priority
	if prio == "" {
		prio = datapath.Normal.String()
	}
	info := TransferInfo{ID: id, Kind: "push", Source: source, Root: r.entry.Root.String(), State: "running",
		Priority: prio, Started: time.Now(), Targets: make([]TargetProgress, len(targets))}
	for i, t := range targets {
		info.Targets[i] = TargetProgress{Target: t, Peer: peers[i].String(), State: "running"}
	}
	job := n.transfers.add(info, cancel)
	go func() {
		defer close(job.done)
		defer cancel()
		swarm := make([]string, len(peers))
		for i, p := range peers {
			swarm[i] = p.String()
		}
		var wg sync.WaitGroup
		for i, p := range peers {
			sources := []string{n.selfStr}
			for _, q := range peers {
				if q != p {
					sources = append(sources, q.String())
				}
			}
			req := receiveRequest{ID: id, Source: refs[i].ref.String(), Entry: entries[i], Sources: sources, Swarm: swarm, Options: o}
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := n.sendTo(tctx, p, req, func(tp TargetProgress) {
					job.update(func(in *TransferInfo) {
						tp.Target, tp.Peer = in.Targets[i].Target, in.Targets[i].Peer
						in.Targets[i] = tp
						sumTargets(in)
					})
				})
				if err != nil {
					job.update(func(in *TransferInfo) {
						in.Targets[i].State, in.Targets[i].Error = "failed", err.Error()
						if tctx.Err() != nil {
							in.Targets[i].State, in.Targets[i].Error = "cancelled", errCancelled.Error()
						}
					})
				}
			}()
		}
		wg.Wait()
		job.update(func(in *TransferInfo) {
			in.State, in.Ended = "done", time.Now()
			sumTargets(in)
			for _, tp := range in.Targets {
				switch tp.State {
				case "cancelled":
					in.State = "cancelled"
				case "failed":
					if in.State != "cancelled" {
						in.State, in.Error = "failed", tp.Error
					}
				}
			}
		})
		n.log.Info("push ended", "id", id, "source", source, "state", job.snapshot().State)
	}()
	return job, nil
}

// sendTo asks p to receive req and relays its progress until it ends.
func (n *meshNode) sendTo(ctx context.Context, p meshnet.PeerID, req receiveRequest, report func(TargetProgress)) error {
	s, err := n.net.Open(ctx, p, transferProtocol)
	if err != nil {
		return fmt.Errorf("open transfer to %s: %w", p, err)
	}
	defer s.Close()
	// Abort, not Close: the receiver must see the cancel as one, not as a
	// request that ended.
	stop := context.AfterFunc(ctx, func() { meshnet.Abort(s) })
	defer stop()
	if err := json.NewEncoder(s).Encode(req); err != nil {
		return fmt.Errorf("send transfer request to %s: %w", p, err)
	}
	sc := bufio.NewScanner(s)
	sc.Buffer(make([]byte, 0, 64<<10), maxTransferRequest)
	var last TargetProgress
	for sc.Scan() {
		var tp TargetProgress
		if err := json.Unmarshal(sc.Bytes(), &tp); err != nil {
			return fmt.Errorf("progress from %s: %w", p, err)
		}
		last = tp
		report(tp)
		if tp.State != "running" {
			if tp.State != "done" {
				return fmt.Errorf("%s: %s", p, tp.Error) // the state is the transfer's, said by the caller
			}
			return nil
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%s: transfer stream ended at state %q: %v", p, last.State, sc.Err())
}

// receive is a checked receiveRequest.
type receive struct {
	id      string
	ref     volume.Ref
	entry   catalog.Entry
	sources []meshnet.PeerID // without the receiver itself
	swarm   []meshnet.PeerID // the receiver among them, or none
	options TransferOptions
}

// decodeReceiveRequest reads and checks the request a pusher sends: one
// JSON object naming a transfer ID, a ref, exactly one catalog entry and
// the peers to fetch from. Anything else is an error for the pusher.
func decodeReceiveRequest(r io.Reader, self meshnet.PeerID) (receive, error) {
	var req receiveRequest
	if err := json.NewDecoder(r).Decode(&req); err != nil {
		return receive{}, fmt.Errorf("transfer request: %w", err)
	}
	if req.ID == "" || len(req.ID) > 64 || strings.ContainsAny(req.ID, "/ \n") {
		return receive{}, fmt.Errorf("transfer request: bad id %q", req.ID)
	}
	es, err := catalog.Decode(req.Entry)
	if err != nil || len(es) != 1 {
		return receive{}, fmt.Errorf("transfer request: want one catalog entry, got %d: %v", len(es), err)
	}
	ref, err := volume.ParseRef(req.Source)
	if err != nil {
		return receive{}, fmt.Errorf("transfer request: %w", err)
	}
	out := receive{id: req.ID, ref: ref, entry: es[0], options: req.Options}
	for _, str := range req.Sources {
		id, err := meshnet.ParsePeerID(str)
		if err != nil {
			return receive{}, fmt.Errorf("transfer request: source %q: %w", str, err)
		}
		if id != self {
			out.sources = append(out.sources, id)
		}
	}
	if err := out.decodeSwarm(req.Swarm, self); err != nil {
		return receive{}, fmt.Errorf("transfer request: %w", err)
	}
	return out, nil
}

// decodeSwarm sets r.swarm from the pusher's list, which must name this
// receiver and otherwise only its sources other than the pusher; the
// transfer spec checks the rest.
func (r *receive) decodeSwarm(swarm []string, self meshnet.PeerID) error {
	if len(swarm) == 0 {
		return nil
	}
	if len(swarm) > len(r.sources)+1 {
		return fmt.Errorf("swarm of %d members, %d sources", len(swarm), len(r.sources))
	}
	for _, str := range swarm {
		id, err := meshnet.ParsePeerID(str)
		if err != nil {
			return fmt.Errorf("swarm member %q: %w", str, err)
		}
		r.swarm = append(r.swarm, id)
	}
	if !slices.Contains(r.swarm, self) {
		return fmt.Errorf("swarm does not name this receiver")
	}
	return nil
}

// serveReceive runs a pull a pusher asked for and streams its progress.
func (n *meshNode) serveReceive(_ context.Context, from meshnet.PeerID, s io.ReadWriteCloser) {
	writeLine := func(tp TargetProgress) error {
		b, _ := json.Marshal(tp)
		_, err := s.Write(append(b, '\n'))
		return err
	}
	fail := func(err error) { _ = writeLine(TargetProgress{State: "failed", Error: err.Error()}) }
	req, err := decodeReceiveRequest(io.LimitReader(s, maxTransferRequest), n.self)
	if err != nil {
		n.log.Warn("bad transfer request", "peer", from, "err", err)
		fail(err)
		return
	}
	n.cat.Merge([]catalog.Entry{req.entry})
	spec, err := transferSpec(req.id, req.entry, peerStrings(req.sources), req.options)
	if err == nil && len(req.swarm) > 0 {
		spec.Swarm, spec.Self = peerStrings(req.swarm), string(n.self)
		err = spec.Validate()
	}
	if err != nil {
		fail(err)
		return
	}
	job, t, err := n.runPull(context.Background(), "receive", req.ref, req.entry, spec)
	if err != nil {
		fail(err)
		return
	}
	// The pusher closing or resetting the stream cancels the pull.
	go func() {
		_, _ = io.Copy(io.Discard, s)
		select {
		case <-job.done:
		default:
			t.Cancel()
		}
	}()
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		select {
		case <-job.done:
			_ = writeLine(targetProgress(job.snapshot()))
			return
		case <-tick.C:
			if writeLine(targetProgress(job.snapshot())) != nil {
				t.Cancel()
			}
		}
	}
}

// sumTargets totals a push's figures over its targets; the ETA is the
// slowest target's.
func sumTargets(i *TransferInfo) {
	i.BytesSent, i.BlocksSent, i.TotalBytes, i.Skipped, i.Rate, i.ETA = 0, 0, 0, 0, 0, 0
	for _, tp := range i.Targets {
		i.Skipped += tp.Skipped
		i.BytesSent += tp.Bytes
		i.BlocksSent += tp.Blocks
		i.TotalBytes += tp.Total
		i.Rate += tp.Rate
		i.ETA = max(i.ETA, tp.ETA)
	}
}

func targetProgress(i TransferInfo) TargetProgress {
	return TargetProgress{State: i.State, Bytes: i.BytesSent, Blocks: i.BlocksSent, Skipped: i.Skipped,
		Total: i.TotalBytes, Rate: i.Rate, ETA: i.ETA, BytesFrom: i.BytesFrom, Error: i.Error}
}
