package node

import (
	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/volume"
)

// Status is api.Status.
type Status = api.Status

// SpaceStatus is the free space of the home's file system; see api.
type SpaceStatus = api.SpaceStatus

// CreateDiskRequest is api.CreateDiskRequest.
type CreateDiskRequest = api.CreateDiskRequest

// CloneRequest is api.CloneRequest.
type CloneRequest = api.CloneRequest

// CreateReplicaRequest is api.CreateReplicaRequest.
type CreateReplicaRequest = api.CreateReplicaRequest

// RemoveDiskResult is api.RemoveDiskResult.
type RemoveDiskResult = api.RemoveDiskResult

// ScrubResult is api.ScrubResult.
type ScrubResult = api.ScrubResult

// CorruptBlock is api.CorruptBlock.
type CorruptBlock = api.CorruptBlock

// errorBody is api.ErrorBody.
type errorBody = api.ErrorBody

// apiDiskInfo is the API's description of a disk held here, before the mesh
// completes it (meshNode.localDiskInfo): alone, this node holds the one copy
// there is of each block, so a disk that wants more has every block
// under-replicated.
func apiDiskInfo(info volume.DiskInfo) api.DiskInfo {
	d := api.DiskInfo{
		Name: info.Name, Size: info.Size, BlockSize: info.BlockSize, Replicas: info.Replicas, Sync: info.Sync,
		Root: volume.RootText(info.Root), UsedBytes: info.UsedBytes, DirtyBytes: info.DirtyBytes, CommitError: info.CommitError, ReplicaCount: info.ReplicaCount,
		Created: info.Created, Committed: info.Committed, Allow: info.Allow,
		Initiators: info.Initiators, CHAPUser: info.CHAPUser, CHAPTargetUser: info.CHAPTargetUser,
		CHAPMissing: info.CHAPMissing,
		Origin:      info.Origin, Creator: info.Creator,
	}
	if d.Replicas > 1 && d.BlockSize > 0 {
		d.UnderReplicated = d.UsedBytes / d.BlockSize
	}
	return d
}

// apiReplicaInfo is the API's description of a replica.
func apiReplicaInfo(r volume.ReplicaInfo) api.ReplicaInfo {
	return api.ReplicaInfo{Disk: r.Disk, Name: r.Name, Root: volume.RootText(r.Root), Size: r.Size,
		BlockSize: r.BlockSize, UsedBytes: r.UsedBytes, Created: r.Created}
}

// apiSpacesuitInfo is the API's description of a spacesuit version.
func apiSpacesuitInfo(s volume.SpacesuitInfo) api.SpacesuitInfo {
	return api.SpacesuitInfo{Name: s.Name, Version: s.Version, Ref: s.Ref, Root: volume.RootText(s.Root), Size: s.Size,
		BlockSize: s.BlockSize, Source: s.Source, Created: s.Created, Owner: s.Owner}
}
