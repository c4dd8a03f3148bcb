package node

import (
	"github.com/weft-mesh/weft/api"
)

// Status is api.Status.
type Status = api.Status

// AllowRequest is api.AllowRequest.
type AllowRequest = api.AllowRequest

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
