package transfer

import (
	"context"
	"fmt"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/datapath"
	"github.com/weft-mesh/weft/internal/errkind"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/volume"
)

// checkOptions refuses knobs out of range. It runs before any transfer is
// registered: a bad knob is a bad request, not a transfer that fails.
func checkOptions(o api.TransferOptions) error {
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
func transferSpec(id string, e catalog.Entry, sources []string, o api.TransferOptions) (datapath.Spec, error) {
	if err := checkOptions(o); err != nil {
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

// resolved is what a SOURCE argument names: a root and its shape.
type resolved struct {
	ref   volume.Ref
	entry catalog.Entry
}

// resolve finds SOURCE (DISK, DISK@REPLICA or NAME@N) in the catalog,
// committing a local disk first so a push sends what was written.
func (s *Service) resolve(ctx context.Context, source string) (resolved, error) {
	ref, err := volume.ParseRef(source)
	if err != nil {
		return resolved{}, err
	}
	if ref.Replica == "" {
		if _, err := s.vols.Commit(ctx, ref.Disk); err == nil {
			if err := s.cat.Publish(ctx, catalog.DiskKey(ref.Disk)); err != nil {
				s.log.Warn("publish a disk before its transfer", "disk", ref.Disk, "err", err)
			}
		}
	}
	e, ok := s.cat.AwaitEntry(ctx, ref)
	if !ok {
		return resolved{}, errkind.Errorf(volume.ErrNotFound, "%s: not in the mesh's catalog", source)
	}
	if !e.Root.Defined() {
		return resolved{}, errkind.Errorf(volume.ErrInvalid, "%s is empty: nothing to transfer", source)
	}
	return resolved{ref: ref, entry: e}, nil
}

// peerFor turns a TARGET or SOURCE (a site name, a peer ID or a multiaddr
// with /p2p/) into a live member; for a site, the member of that site
// closest to key.
func (s *Service) peerFor(target string, key cid.Cid) (meshnet.PeerID, error) {
	if id, err := meshnet.ParsePeerID(target); err == nil {
		return id, nil
	}
	if l, ok := s.net.(meshnet.Learner); ok {
		if id, err := l.Learn(target); err == nil {
			return id, nil
		}
	}
	site := s.cat.SitePeers(target, key)
	switch {
	case len(site) == 0 && target == s.site:
		return "", errkind.Errorf(volume.ErrInvalid, "target %q is this node's own site, with no other live member", target)
	case len(site) == 0:
		return "", errkind.Errorf(volume.ErrNotFound, "target %q: not a peer ID, a multiaddr or a site with a live member", target)
	}
	return site[0], nil
}
