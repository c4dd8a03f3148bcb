package transfer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/internal/errkind"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/volume"
)

// Recover brings disk back to the last state replicated to site: the
// replica is pulled back from the site if this node lacks it, and the head
// restored to it (the current head is kept as a backup replica first), or
// the disk re-created from it if it is gone. The result names the backup
// ("" when none was taken), whose record the caller announces with the
// disk's.
func (s *Service) Recover(ctx context.Context, disk, site string) (volume.RestoreResult, error) {
	last := s.LastReplicated(disk, site)
	if last == "" {
		return volume.RestoreResult{}, errkind.Errorf(volume.ErrNotFound, "recover %s: nothing replicated to %s", disk, site)
	}
	ref := volume.Ref{Disk: disk, Replica: last}
	if v, err := s.vols.OpenView(ctx, ref); err == nil {
		v.Close() // held here already: nothing to fetch
	} else {
		if !errors.Is(err, volume.ErrNotFound) {
			return volume.RestoreResult{}, err
		}
		job, err := s.pullFrom(ctx, newID(), api.TransferRequest{Source: ref.String(), From: site})
		if err != nil {
			return volume.RestoreResult{}, err
		}
		st, err := job.Wait(ctx)
		if err != nil {
			job.cancel()
			return volume.RestoreResult{}, err
		}
		if State(st.State) != Done {
			return volume.RestoreResult{}, fmt.Errorf("recover %s: pull from %s %s: %s", disk, site, st.State, st.Error)
		}
	}
	if _, err := s.vols.Head(disk); errors.Is(err, volume.ErrNotFound) {
		d, err := s.vols.Clone(ctx, ref, disk, "")
		return volume.RestoreResult{Disk: d}, err
	}
	return s.vols.Restore(ctx, disk, last)
}

// LastReplicated names the replica holding the last state of disk
// replicated to site: the newest of its policies' (push and pull), or
// (the policies removed) the newest replica replication took for that
// site.
func (s *Service) LastReplicated(disk, site string) string {
	var last string
	var lastTime time.Time
	consider := func(name string) {
		if s, _, t, ok := parseStateName(name); ok && s == site && t.After(lastTime) {
			last, lastTime = name, t
		}
	}
	for _, r := range s.policyRecords(disk, site) {
		consider(r.policy.LastReplica)
	}
	if last != "" {
		return last
	}
	prefix := catalog.ReplicaPrefix + disk + "/"
	for _, e := range s.cat.List(prefix) {
		consider(strings.TrimPrefix(e.Key, prefix))
	}
	return last
}
