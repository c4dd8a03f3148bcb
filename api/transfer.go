package api

import "time"

// TransferOptions are the knobs of a push or pull.
type TransferOptions struct {
	Priority    string `json:"priority,omitempty"`   // very-low ... very-high; default normal
	BWLimit     int64  `json:"bwlimit,omitempty"`    // bytes/s on the wire, 0 = none
	BlockSize   int64  `json:"block_size,omitempty"` // transfer unit in bytes, 0 = 4 MiB
	Concurrency int    `json:"concurrency,omitempty"`
}

// TransferInfo is a transfer as `weft transfers` shows it. Field names are
// part of the CLI's JSON contract.
type TransferInfo struct {
	ID         string           `json:"id"`
	Kind       string           `json:"kind"` // push, pull, receive, background
	Source     string           `json:"source"`
	Root       string           `json:"root"`
	State      string           `json:"state"` // running, done, failed, cancelled
	Priority   string           `json:"priority"`
	BytesSent  int64            `json:"bytes_sent"`
	BlocksSent int64            `json:"blocks_sent"`
	TotalBytes int64            `json:"total_bytes"`
	Skipped    int64            `json:"skipped_blocks"` // already held by the receiver
	Rate       float64          `json:"rate"`           // bytes/s
	ETA        float64          `json:"eta_seconds"`
	Targets    []TargetProgress `json:"targets"`
	BytesFrom  map[string]int64 `json:"bytes_from,omitempty"`
	Started    time.Time        `json:"started"`
	Ended      time.Time        `json:"ended,omitzero"`
	Error      string           `json:"error,omitempty"`
}

// TargetProgress is one receiver of a transfer.
type TargetProgress struct {
	Target    string           `json:"target"` // as given: site, peer ID or multiaddr
	Peer      string           `json:"peer"`
	State     string           `json:"state"`
	Bytes     int64            `json:"bytes"` // moved to this target
	Blocks    int64            `json:"blocks"`
	Skipped   int64            `json:"skipped_blocks"` // already there
	Total     int64            `json:"total_bytes"`
	Rate      float64          `json:"rate"`
	ETA       float64          `json:"eta_seconds"`
	BytesFrom map[string]int64 `json:"bytes_from,omitempty"`
	Error     string           `json:"error,omitempty"`
}

// TransferRequest is the body of POST /v1/transfers: a push (Targets) or a
// pull (From).
type TransferRequest struct {
	Source  string          `json:"source"`
	Targets []string        `json:"targets,omitempty"`
	From    string          `json:"from,omitempty"`
	Options TransferOptions `json:"options"`
}

// RecoverRequest is the body of POST /v1/disks/{name}/recover.
type RecoverRequest struct {
	From string `json:"from"` // the site the disk was replicated to
}
