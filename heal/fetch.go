package heal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/exchange"
	"github.com/weft-mesh/weft/placement"
)

// FetchingStore is a block store that reaches into the mesh for what it
// lacks: a Get of a block that is missing here, or stored corrupt, fetches
// a verified copy from a member that holds it (placement set first, as
// its members are the likeliest holders), keeps it, and returns it. A
// corrupt local copy is replaced. Everything else is the local store's.
type FetchingStore struct {
	blockstore.Store
	Self    string
	Peers   Peers
	Members func() []placement.Member
	Logger  *slog.Logger
}

// Get returns the block from the local store or, failing that, the mesh.
func (s *FetchingStore) Get(ctx context.Context, c cid.Cid) ([]byte, error) {
	data, err := s.Store.Get(ctx, c)
	if err == nil || !repairable(err) {
		return data, err
	}
	return s.getRemote(ctx, c, err)
}

// GetAppend is Get appending the block to dst, reading local blocks with
// the local store's GetAppend where it has one (blockstore.Disk), so that
// an export reuses its buffers. Every block is verified.
func (s *FetchingStore) GetAppend(ctx context.Context, c cid.Cid, dst []byte) ([]byte, error) {
	local, ok := s.Store.(interface {
		GetAppend(ctx context.Context, c cid.Cid, dst []byte) ([]byte, error)
	})
	if !ok {
		data, err := s.Get(ctx, c)
		if err != nil {
			return nil, err
		}
		return append(dst, data...), nil
	}
	out, err := local.GetAppend(ctx, c, dst)
	if err == nil || !repairable(err) {
		return out, err
	}
	data, err := s.getRemote(ctx, c, err)
	if err != nil {
		return nil, err
	}
	return append(dst, data...), nil
}

// repairable reports whether a local read failed in a way a copy from the
// mesh mends.
func repairable(err error) bool {
	return errors.Is(err, blockstore.ErrNotFound) || errors.Is(err, blockstore.ErrCorrupt)
}

// getRemote fetches c from the mesh after the local read failed with err,
// keeps it if there is room (replacing a corrupt local copy) and returns
// it. A full store does not fail the read: the block is returned without
// being kept, so that reads, and gc's mark, which frees the space, work
// on a full node.
func (s *FetchingStore) getRemote(ctx context.Context, c cid.Cid, err error) ([]byte, error) {
	b, err := s.repair(ctx, c, err)
	if errors.Is(err, blockstore.ErrNoSpace) && b.Data != nil {
		if s.Logger != nil {
			s.Logger.Debug("fetched block not kept: the store is full", "cid", c, "err", err)
		}
		return b.Data, nil
	}
	if err != nil {
		return nil, err
	}
	return b.Data, nil
}

// Repair replaces c, missing here or stored corrupt, with a verified copy
// from the mesh, and returns nil once the copy is stored. An error
// matching blockstore.ErrNotFound means no live member holds it; one
// matching blockstore.ErrNoSpace, that it was fetched but the store had
// no room for it. A block that reads back whole needs no repair.
func (s *FetchingStore) Repair(ctx context.Context, c cid.Cid) error {
	_, err := s.Store.Get(ctx, c)
	if err == nil || !repairable(err) {
		return err
	}
	_, err = s.repair(ctx, c, err)
	return err
}

// repair fetches c from the mesh after the local read failed with err and
// keeps it, replacing a corrupt local copy: a put over a damaged copy
// rewrites it (blockstore.Putter), so nothing is deleted first, and a put
// that fails (no room) leaves the corrupt copy in place, still reported.
// It returns the fetched block also when keeping it failed.
func (s *FetchingStore) repair(ctx context.Context, c cid.Cid, err error) (blockstore.Block, error) {
	b, ferr := s.fetch(ctx, c)
	if ferr != nil {
		return blockstore.Block{}, errors.Join(err, ferr)
	}
	if errors.Is(err, blockstore.ErrCorrupt) && s.Logger != nil {
		s.Logger.Warn("replacing corrupt block with a copy from the mesh", "cid", c)
	}
	if err := s.Store.Put(ctx, b); err != nil {
		return b, fmt.Errorf("keep fetched %s: %w", c, err)
	}
	return b, nil
}

// fetch asks the other members for c, closest to the block first.
func (s *FetchingStore) fetch(ctx context.Context, c cid.Cid) (blockstore.Block, error) {
	// A VM waits on this read: it goes before heal's and transfers' bulk
	// round trips to the same peer.
	ctx = exchange.Foreground(ctx)
	members := s.Members()
	var errs []error
	for _, m := range placement.Place(c.Hash(), members, len(members)) {
		if m.ID == s.Self {
			continue
		}
		got, err := s.Peers.Get(ctx, m.ID, []cid.Cid{c})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", exchange.PeerName(m.ID), err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if b, ok := got[c]; ok {
			return b, nil
		}
	}
	if len(errs) == 0 {
		return blockstore.Block{}, fmt.Errorf("fetch %s: no live member holds it: %w", c, blockstore.ErrNotFound)
	}
	return blockstore.Block{}, fmt.Errorf("fetch %s: %w", c, errors.Join(errs...))
}
