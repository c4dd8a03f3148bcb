package csi

import (
	"context"
	"errors"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/weft-mesh/weft/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// CreateVolume creates a disk, or clones one from a snapshot or a volume,
// recording CSI as its creator (api.CreatorCSI). A volume of the same
// name that CSI made, that fits the request and came from the content
// source it names (the disk's origin), is answered as it is; one that
// does not, or a disk of that name made otherwise (weft disk create, the
// Docker plugin), fails with AlreadyExists.
func (p *Plugin) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if req.GetName() == "" {
		return nil, invalidf("volume name missing")
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return nil, err
	}
	params, err := parseParams(req.GetParameters())
	if err != nil {
		return nil, invalidf("%v", err)
	}
	cr := capacityRange{req.GetCapacityRange().GetRequiredBytes(), req.GetCapacityRange().GetLimitBytes()}
	if cr.required < 0 || cr.limit < 0 {
		return nil, invalidf("capacity range %d..%d: negative", cr.required, cr.limit)
	}
	if cr.limit > 0 && cr.required > cr.limit {
		return nil, status.Errorf(codes.OutOfRange, "capacity range: required %d above limit %d", cr.required, cr.limit)
	}
	origin, err := sourceOrigin(req.GetVolumeContentSource())
	if err != nil {
		return nil, err
	}
	name := weftName(req.GetName())
	unlock, err := p.lockOp("volume/" + name)
	if err != nil {
		return nil, err
	}
	defer unlock()

	d, err := p.cfg.Volumes.DiskInfo(ctx, name)
	switch {
	case err == nil && d.Creator != api.CreatorCSI:
		return nil, status.Errorf(codes.AlreadyExists, "volume %s: disk %s exists and was not made by CSI (made by %q): the plugin never adopts it", req.GetName(), name, d.Creator)
	case err == nil:
		if !cr.fits(d.Size) || !params.matches(d) || d.Origin != origin {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s exists as disk %s of %d bytes, %d replicas, sync %v, block size %d, cloned from %q: not what this request asks",
				req.GetName(), name, d.Size, d.Replicas, d.Sync, d.BlockSize, d.Origin)
		}
	case errors.Is(err, api.ErrNotFound):
		if src := req.GetVolumeContentSource(); src != nil {
			d, err = p.cloneVolume(ctx, name, src, cr, params)
		} else {
			d, err = p.createDisk(ctx, name, cr, params)
		}
		if err != nil {
			return nil, err
		}
		p.log.Info("csi volume created", "name", req.GetName(), "disk", name, "size", d.Size)
	default:
		return nil, grpcError(err, "volume %s", name)
	}
	return &csi.CreateVolumeResponse{Volume: &csi.Volume{
		VolumeId:      d.Name,
		CapacityBytes: d.Size,
		ContentSource: req.GetVolumeContentSource(),
	}}, nil
}

// sourceOrigin is the origin a disk cloned from src records: the
// snapshot's ID (DISK@REPLICA) or the volume's (DISK); "" for no source.
// A source without an ID names nothing: NotFound, as any unknown source.
func sourceOrigin(src *csi.VolumeContentSource) (string, error) {
	switch {
	case src == nil:
		return "", nil
	case src.GetSnapshot() != nil:
		if id := src.GetSnapshot().GetSnapshotId(); id != "" {
			return id, nil
		}
		return "", status.Error(codes.NotFound, "source snapshot ID empty: not found")
	case src.GetVolume() != nil:
		if id := src.GetVolume().GetVolumeId(); id != "" {
			return id, nil
		}
		return "", status.Error(codes.NotFound, "source volume ID empty: not found")
	}
	return "", invalidf("volume content source: neither a snapshot nor a volume")
}

func (p *Plugin) createDisk(ctx context.Context, name string, cr capacityRange, params volumeParams) (api.DiskInfo, error) {
	bs := params.blockSize
	if bs == 0 {
		bs = api.DefaultBlockSize
	}
	size, ok := volumeSize(&cr, bs)
	if !ok {
		return api.DiskInfo{}, status.Errorf(codes.OutOfRange, "capacity range %d..%d: no whole number of %d-byte blocks fits", cr.required, cr.limit, bs)
	}
	d, err := p.cfg.Volumes.CreateDisk(ctx, api.DiskSpec{
		Name: name, Size: size, BlockSize: bs, Replicas: params.replicas, Sync: params.sync != nil && *params.sync,
		Creator: api.CreatorCSI,
	})
	return d, grpcError(err, "create disk %s", name)
}

// cloneVolume makes disk name a clone of a snapshot (a replica) or of a
// volume (a disk head): O(1), sharing blocks. A clone has its source's
// size (disks do not grow), block size and replicas, and writes in async
// mode; a request that asks otherwise is refused before anything is made.
func (p *Plugin) cloneVolume(ctx context.Context, name string, src *csi.VolumeContentSource, cr capacityRange, params volumeParams) (api.DiskInfo, error) {
	var (
		ref      api.Ref
		size, bs int64
		replicas int
	)
	switch {
	case src.GetSnapshot() != nil:
		id := src.GetSnapshot().GetSnapshotId()
		rep, err := p.findSnapshot(ctx, id)
		if err != nil {
			return api.DiskInfo{}, err
		}
		ref, size, bs = api.Ref{Disk: rep.Disk, Replica: rep.Name}, rep.Size, rep.BlockSize
		replicas = api.DefaultReplicas
		if d, err := p.cfg.Volumes.DiskInfo(ctx, rep.Disk); err == nil {
			replicas = d.Replicas
		}
	case src.GetVolume() != nil:
		id := src.GetVolume().GetVolumeId()
		if !validVolumeID(id) {
			return api.DiskInfo{}, status.Errorf(codes.NotFound, "source volume %q not found", id)
		}
		d, err := p.cfg.Volumes.DiskInfo(ctx, id)
		if err != nil {
			return api.DiskInfo{}, grpcError(err, "source volume %s", id)
		}
		ref, size, bs, replicas = api.Ref{Disk: id}, d.Size, d.BlockSize, d.Replicas
	}
	if !cr.fits(size) {
		return api.DiskInfo{}, status.Errorf(codes.OutOfRange, "source %s is %d bytes, outside the capacity range %d..%d (weft disks cannot be resized)", ref, size, cr.required, cr.limit)
	}
	want := api.DiskInfo{Replicas: replicas, BlockSize: bs}
	if !params.matches(want) {
		return api.DiskInfo{}, invalidf("a clone of %s has its %d replicas, block size %d and async mode; the parameters ask otherwise", ref, replicas, bs)
	}
	d, err := p.cfg.Volumes.Clone(ctx, ref, name, api.CreatorCSI)
	return d, grpcError(err, "clone %s into %s", ref, name)
}

// DeleteVolume removes a disk that CSI made; its replicas (the volume's
// snapshots) stay. A volume that does not exist is deleted already; one
// in use on the node (a loop device, an open file), or a disk of that
// name that CSI did not make, fails with FailedPrecondition.
func (p *Plugin) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, invalidf("volume ID missing")
	}
	if !validVolumeID(id) {
		return &csi.DeleteVolumeResponse{}, nil
	}
	unlock, err := p.lockOp("volume/" + id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	d, err := p.cfg.Volumes.DiskInfo(ctx, id)
	if errors.Is(err, api.ErrNotFound) {
		return &csi.DeleteVolumeResponse{}, nil
	}
	if err != nil {
		return nil, grpcError(err, "delete volume %s", id)
	}
	if d.Creator != api.CreatorCSI {
		return nil, status.Errorf(codes.FailedPrecondition, "delete volume %s: the disk was not made by CSI (made by %q): remove it with weft disk rm", id, d.Creator)
	}
	err = p.cfg.Volumes.RemoveDisk(ctx, id)
	if err != nil && !errors.Is(err, api.ErrNotFound) {
		return nil, grpcError(err, "delete volume %s", id)
	}
	if err == nil {
		p.log.Info("csi volume deleted", "disk", id)
	}
	return &csi.DeleteVolumeResponse{}, nil
}

// ValidateVolumeCapabilities confirms the capabilities the plugin serves.
func (p *Plugin) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, invalidf("volume ID missing")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, invalidf("volume capabilities missing")
	}
	if !validVolumeID(id) {
		return nil, status.Errorf(codes.NotFound, "volume %q not found", id)
	}
	if _, err := p.cfg.Volumes.DiskInfo(ctx, id); err != nil {
		return nil, grpcError(err, "volume %s", id)
	}
	if _, err := parseParams(req.GetParameters()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	for _, c := range req.GetVolumeCapabilities() {
		if err := checkCapability(c); err != nil {
			return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
		}
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

// ListVolumes lists the node's disks, by name, a page at a time.
func (p *Plugin) ListVolumes(ctx context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	disks, err := p.cfg.Volumes.ListDisks(ctx)
	if err != nil {
		return nil, grpcError(err, "list disks")
	}
	byName := make(map[string]api.DiskInfo, len(disks))
	names := make([]string, 0, len(disks))
	for _, d := range disks {
		byName[d.Name] = d
		names = append(names, d.Name)
	}
	names, next, err := listPage(names, req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	resp := &csi.ListVolumesResponse{NextToken: next}
	for _, n := range names {
		d := byName[n]
		resp.Entries = append(resp.Entries, &csi.ListVolumesResponse_Entry{
			Volume: &csi.Volume{VolumeId: d.Name, CapacityBytes: d.Size},
		})
	}
	return resp, nil
}

// GetCapacity answers the free space of the file system holding the
// node's home, less the reserve the daemon keeps for blocks of other
// nodes. Disks are thin: this bounds what can be written, not created.
func (p *Plugin) GetCapacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	for _, c := range req.GetVolumeCapabilities() {
		if checkCapability(c) != nil {
			return &csi.GetCapacityResponse{}, nil
		}
	}
	if _, err := parseParams(req.GetParameters()); err != nil {
		return nil, invalidf("%v", err)
	}
	st, err := p.cfg.Volumes.Status(ctx)
	if err != nil {
		return nil, grpcError(err, "daemon status")
	}
	free := max(st.Space.FreeBytes-st.Space.ReserveBytes, 0)
	return &csi.GetCapacityResponse{AvailableCapacity: free}, nil
}

// ControllerGetCapabilities lists what the controller does. There is no
// PUBLISH_UNPUBLISH (a disk is served by the node that owns it, with
// nothing to attach) and no EXPAND_VOLUME (weft disks cannot be resized).
func (p *Plugin) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	rpcs := []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_GET_CAPACITY,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csi.ControllerServiceCapability_RPC_GET_SNAPSHOT,
	}
	resp := &csi.ControllerGetCapabilitiesResponse{}
	for _, t := range rpcs {
		resp.Capabilities = append(resp.Capabilities, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: t}},
		})
	}
	return resp, nil
}
