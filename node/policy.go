package node

import "github.com/weft-mesh/weft/api"

// Policy is api.Policy.
type Policy = api.Policy

// Modes and statuses of a policy: see api.
const (
	ModePush = api.ModePush
	ModePull = api.ModePull

	PolicyOK       = api.PolicyOK
	PolicyPending  = api.PolicyPending
	PolicyFailing  = api.PolicyFailing
	PolicyDiskGone = api.PolicyDiskGone
)

// ReplicateRequest is api.ReplicateRequest.
type ReplicateRequest = api.ReplicateRequest

// PolicyRemoval is api.PolicyRemoval.
type PolicyRemoval = api.PolicyRemoval

// MinReplicateEvery is api.MinReplicateEvery.
const MinReplicateEvery = api.MinReplicateEvery
