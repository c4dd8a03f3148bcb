package api

import "time"

// Policy is a scheduled replication of a disk to a site, kept in the
// catalog (key replicate/DISK/SITE for a push, replicate/DISK/SITE/pull
// for a pull; its root the last replicated root) and run by the disk's
// owner or by the pulling node. Field names are part of the CLI's JSON
// contract.
type Policy struct {
	Disk string `json:"disk"`
	Site string `json:"site"`
	// Mode is "push" (the disk's owner sends it to the site) or "pull"
	// (Puller fetches it at the site).
	Mode    string          `json:"mode"`
	Every   time.Duration   `json:"every"`
	Options TransferOptions `json:"options"`
	// Puller, if set, is the peer ID of a node at the site that pulls the
	// disk on the schedule (pull-based backup); otherwise the disk's owner
	// pushes it.
	Puller string `json:"puller,omitempty"`
	// Keep is how many replicated states (see stateName) are kept; older
	// ones are removed after each cycle, on the owner and at the site, so
	// their blocks can be collected.
	Keep int `json:"keep"`

	// State of the last cycles.
	LastReplica string    `json:"last_replica,omitempty"` // DISK@LAST_REPLICA holds what the site has
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastSource  string    `json:"last_source,omitempty"` // the disk root that cycle replicated
	LastBytes   int64     `json:"last_bytes"`
	TotalBytes  int64     `json:"total_bytes"`
	Cycles      int64     `json:"cycles"`
	LastTry     time.Time `json:"last_try,omitzero"`
	LastError   string    `json:"last_error,omitempty"`

	// Status, as of the listing (not stored): PolicyOK, PolicyPending,
	// PolicyFailing or PolicyDiskGone.
	Status string `json:"status,omitempty"`
	// Lag is how old the site's copy is: the time since the replica it
	// holds was taken (0 when the disk has not changed since). Absent when
	// the site holds nothing yet or the disk is gone.
	Lag *float64 `json:"lag_seconds,omitempty"`
}

// ReplicateRequest is the body of POST /v1/replicate.
type ReplicateRequest struct {
	Disk string `json:"disk"`
	Site string `json:"site"` // "" with Pull: this node's site
	// Pull makes this node pull the disk to its own site on the schedule.
	Pull    bool            `json:"pull,omitempty"`
	Every   time.Duration   `json:"every,omitempty"` // 0: defaultReplicateEvery
	Keep    int             `json:"keep,omitempty"`  // 0: defaultReplicateKeep
	Options TransferOptions `json:"options"`
}

// PolicyRemoval is the answer to DELETE /v1/replicate/{disk}/{site}: the
// policy removed, and the replicated states its cycles took, which stay
// (on the owner and at the site for a push, on the puller for a pull)
// until removed with `weft replica rm`.
type PolicyRemoval struct {
	Policy Policy   `json:"policy"`
	Kept   []string `json:"kept"`
}

// PublishRequest is the body of POST /v1/spacesuits.
type PublishRequest struct {
	Name   string `json:"name"`
	Source string `json:"source"` // DISK or DISK@REPLICA
}

// Modes and statuses of a policy.
const (
	ModePush = "push"
	ModePull = "pull"

	PolicyOK       = "ok"        // the last cycle succeeded or had nothing to send
	PolicyPending  = "pending"   // no cycle has sent anything yet (the disk may be empty)
	PolicyFailing  = "failing"   // the last cycle failed: see last_error
	PolicyDiskGone = "disk-gone" // the disk is no longer in the catalog
)

// MinReplicateEvery is the shortest interval between a policy's cycles.
const MinReplicateEvery = time.Second
