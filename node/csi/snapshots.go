package csi

import (
	"context"
	"errors"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/weft-mesh/weft/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// CreateSnapshot makes a replica of the source volume's disk (O(1), it
// commits the disk first). Snapshot names are unique across volumes: the
// same name on the same volume answers the existing snapshot, on another
// volume fails with AlreadyExists.
func (p *Plugin) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	src := req.GetSourceVolumeId()
	if src == "" {
		return nil, invalidf("source volume ID missing")
	}
	if req.GetName() == "" {
		return nil, invalidf("snapshot name missing")
	}
	if len(req.GetParameters()) > 0 {
		return nil, invalidf("snapshots take no parameters")
	}
	if !validVolumeID(src) {
		return nil, status.Errorf(codes.NotFound, "source volume %q not found", src)
	}
	name := weftName(req.GetName())
	unlock, err := p.lockOp("snapshot/" + name)
	if err != nil {
		return nil, err
	}
	defer unlock()

	reps, err := p.allReplicas(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range reps {
		if r.Name != name {
			continue
		}
		if r.Disk != src {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %s exists, of volume %s", req.GetName(), r.Disk)
		}
		return &csi.CreateSnapshotResponse{Snapshot: csiSnapshot(r)}, nil
	}
	r, err := p.cfg.Volumes.CreateReplica(ctx, src, name)
	if err != nil {
		return nil, grpcError(err, "snapshot volume %s", src)
	}
	p.log.Info("csi snapshot created", "name", req.GetName(), "disk", src, "replica", name)
	return &csi.CreateSnapshotResponse{Snapshot: csiSnapshot(r)}, nil
}

// DeleteSnapshot removes a replica; one that does not exist is deleted
// already. Volumes cloned from it keep their data.
func (p *Plugin) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	id := req.GetSnapshotId()
	if id == "" {
		return nil, invalidf("snapshot ID missing")
	}
	disk, rep, err := parseSnapshotID(id)
	if err != nil {
		return &csi.DeleteSnapshotResponse{}, nil
	}
	unlock, err := p.lockOp("snapshot/" + rep)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := p.cfg.Volumes.RemoveReplica(ctx, disk, rep); err != nil && !errors.Is(err, api.ErrNotFound) {
		return nil, grpcError(err, "delete snapshot %s", id)
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

// ListSnapshots lists replicas, by ID, a page at a time: one by its ID,
// those of one volume, or those of every disk of the node.
func (p *Plugin) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	var (
		reps []api.ReplicaInfo
		err  error
	)
	switch id, src := req.GetSnapshotId(), req.GetSourceVolumeId(); {
	case id != "":
		r, err := p.findSnapshot(ctx, id)
		if status.Code(err) == codes.NotFound {
			return &csi.ListSnapshotsResponse{}, nil
		}
		if err != nil {
			return nil, err
		}
		if src == "" || src == r.Disk {
			reps = append(reps, r)
		}
	case src != "":
		reps, err = p.volumeReplicas(ctx, src)
	default:
		reps, err = p.allReplicas(ctx)
	}
	if err != nil {
		return nil, err
	}
	byID := make(map[string]api.ReplicaInfo, len(reps))
	ids := make([]string, 0, len(reps))
	for _, r := range reps {
		id := snapshotID(r.Disk, r.Name)
		byID[id] = r
		ids = append(ids, id)
	}
	ids, next, err := listPage(ids, req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	resp := &csi.ListSnapshotsResponse{NextToken: next}
	for _, id := range ids {
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: csiSnapshot(byID[id])})
	}
	return resp, nil
}

// findSnapshot returns the replica a snapshot ID names, or a NotFound
// status.
func (p *Plugin) findSnapshot(ctx context.Context, id string) (api.ReplicaInfo, error) {
	disk, rep, err := parseSnapshotID(id)
	if err != nil {
		return api.ReplicaInfo{}, status.Errorf(codes.NotFound, "snapshot %q not found", id)
	}
	reps, err := p.volumeReplicas(ctx, disk)
	if err != nil {
		return api.ReplicaInfo{}, err
	}
	for _, r := range reps {
		if r.Name == rep {
			return r, nil
		}
	}
	return api.ReplicaInfo{}, status.Errorf(codes.NotFound, "snapshot %q not found", id)
}

// volumeReplicas lists a disk's replicas; none for a disk that does not
// exist (nor any replica of it).
func (p *Plugin) volumeReplicas(ctx context.Context, disk string) ([]api.ReplicaInfo, error) {
	if !validVolumeID(disk) {
		return nil, nil
	}
	reps, err := p.cfg.Volumes.ListReplicas(ctx, disk)
	if errors.Is(err, api.ErrNotFound) {
		return nil, nil
	}
	return reps, grpcError(err, "list snapshots of %s", disk)
}

// allReplicas lists the replicas of every disk of the node, removed
// disks included: a deleted volume's snapshots remain, and their names
// stay taken.
func (p *Plugin) allReplicas(ctx context.Context) ([]api.ReplicaInfo, error) {
	disks, err := p.cfg.Volumes.ReplicaDisks(ctx)
	if err != nil {
		return nil, grpcError(err, "list the disks with snapshots")
	}
	var out []api.ReplicaInfo
	for _, d := range disks {
		reps, err := p.volumeReplicas(ctx, d)
		if err != nil {
			return nil, err
		}
		out = append(out, reps...)
	}
	return out, nil
}

func csiSnapshot(r api.ReplicaInfo) *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId:     snapshotID(r.Disk, r.Name),
		SourceVolumeId: r.Disk,
		SizeBytes:      r.Size,
		CreationTime:   timestamppb.New(r.Created),
		ReadyToUse:     true,
	}
}

// GetSnapshot describes one snapshot by its ID.
func (p *Plugin) GetSnapshot(ctx context.Context, req *csi.GetSnapshotRequest) (*csi.GetSnapshotResponse, error) {
	if req.GetSnapshotId() == "" {
		return nil, invalidf("snapshot ID missing")
	}
	r, err := p.findSnapshot(ctx, req.GetSnapshotId())
	if err != nil {
		return nil, err
	}
	return &csi.GetSnapshotResponse{Snapshot: csiSnapshot(r)}, nil
}
