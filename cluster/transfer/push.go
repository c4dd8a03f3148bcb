package transfer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/datapath"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/volume"
)

// push sends source to every target at once: each receives from this node
// and from the other targets (a swarm).
func (s *Service) push(ctx context.Context, id, source string, targets []string, o api.TransferOptions) (*Job, error) {
	sources := make([]string, len(targets))
	for i := range sources {
		sources[i] = source
	}
	return s.pushEach(ctx, id, sources, targets, o)
}

// pushEach sends sources[i] to targets[i], every target at once in one
// swarm: the sources name one root (replicas of one state under the
// names each site keeps), so the targets fetch it from this node and from
// each other as they would one source.
func (s *Service) pushEach(ctx context.Context, id string, sources, targets []string, o api.TransferOptions) (*Job, error) {
	if len(sources) != len(targets) || len(targets) == 0 {
		return nil, fmt.Errorf("push: %d sources for %d targets: %w", len(sources), len(targets), volume.ErrInvalid)
	}
	refs := make([]resolved, len(sources))
	for i, source := range sources {
		r, err := s.resolve(ctx, source)
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
		if peers[i], err = s.peerFor(t, r.entry.Root); err != nil {
			return nil, err
		}
		if peers[i] == s.self {
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
	info := api.TransferInfo{ID: id, Kind: "push", Source: source, Root: r.entry.Root.String(), State: string(Running),
		Priority: prio, Started: s.clock.Now(), Targets: make([]api.TargetProgress, len(targets))}
	for i, t := range targets {
		info.Targets[i] = api.TargetProgress{Target: t, Peer: peers[i].String(), State: string(Running)}
	}
	job := s.add(info, cancel)
	go func() {
		defer close(job.done)
		defer cancel()
		swarm := make([]string, len(peers))
		for i, p := range peers {
			swarm[i] = p.String()
		}
		unreached := make([]bool, len(peers)) // [i]: target i failed, not reached
		var wg sync.WaitGroup
		for i, p := range peers {
			sources := []string{s.selfStr}
			for _, q := range peers {
				if q != p {
					sources = append(sources, q.String())
				}
			}
			req := receiveRequest{ID: id, Source: refs[i].ref.String(), Entry: entries[i], Sources: sources, Swarm: swarm, Options: o}
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.sendTo(tctx, p, req, func(tp api.TargetProgress) {
					job.update(func(in *api.TransferInfo) {
						tp.Target, tp.Peer = in.Targets[i].Target, in.Targets[i].Peer
						in.Targets[i] = tp
						sumTargets(in)
					})
				})
				if err != nil {
					unreached[i] = errors.Is(err, meshnet.ErrUnreachable) || errors.Is(err, meshnet.ErrUnsupported)
					job.update(func(in *api.TransferInfo) {
						in.Targets[i].State, in.Targets[i].Error = string(Failed), err.Error()
						if tctx.Err() != nil {
							in.Targets[i].State, in.Targets[i].Error = string(Cancelled), errCancelled.Error()
						}
					})
				}
			}()
		}
		wg.Wait()
		job.update(func(in *api.TransferInfo) {
			in.State, in.Ended = string(Done), s.clock.Now()
			sumTargets(in)
			job.unreached = true
			for i, tp := range in.Targets {
				switch State(tp.State) {
				case Cancelled:
					in.State = string(Cancelled)
				case Failed:
					if State(in.State) != Cancelled {
						in.State, in.Error = string(Failed), tp.Error
					}
					job.unreached = job.unreached && unreached[i]
				}
			}
		})
		s.log.Info("push ended", "id", id, "source", source, "state", job.Info().State)
	}()
	return job, nil
}
