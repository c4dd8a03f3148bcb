package node

import (
	"time"

	"github.com/weft-mesh/weft/heal"
)

// Status describes a running node. Field names are part of the CLI's JSON
// contract.
type Status struct {
	ID        string    `json:"id"`
	PeerID    string    `json:"peer_id,omitempty"`
	Site      string    `json:"site"`
	Home      string    `json:"home"`
	Listen    []string  `json:"listen"`
	PID       int       `json:"pid"`
	Started   time.Time `json:"started"`
	Blocks    int64     `json:"blocks"`     // blocks in the store
	Bytes     int64     `json:"bytes"`      // payload bytes of those blocks
	DiskBytes int64     `json:"disk_bytes"` // space the store occupies, garbage included
	Disks     int       `json:"disks"`
	Replicas  int       `json:"replicas"` // replicas of live disks
	// NBD is the address the NBD server listens on ("" when disabled),
	// NBDSocket its unix socket; NBDConns counts open NBD connections.
	NBD       string `json:"nbd,omitempty"`
	NBDSocket string `json:"nbd_socket,omitempty"`
	NBDTLS    string `json:"nbd_tls,omitempty"` // "", "offered" or "required"
	NBDConns  int    `json:"nbd_conns"`
	// Goroutines is the daemon's goroutine count, for leak checks.
	Goroutines int `json:"goroutines"`
	// Mounts are the FUSE mounts of the node's disks, by directory.
	Mounts []MountInfo `json:"mounts"`
	// Members is the mesh as this node sees it; UnderReplicated counts
	// the blocks this node holds or should hold that have fewer than R
	// copies; Heal is self-heal's progress.
	Members         []Peer       `json:"members"`
	UnderReplicated int64        `json:"under_replicated"`
	Heal            *heal.Status `json:"heal,omitempty"`
}

// AllowRequest is the body of PUT /v1/disks/{name}/allow.
type AllowRequest struct {
	Allow []string `json:"allow"` // CIDRs; empty allows any client
}

// CreateDiskRequest is the body of POST /v1/disks.
type CreateDiskRequest struct {
	Name      string `json:"name"`
	Size      int64  `json:"size"`
	BlockSize int64  `json:"block_size,omitempty"`
	Replicas  int    `json:"replicas,omitempty"`
	Sync      bool   `json:"sync,omitempty"`
}

// CloneRequest is the body of POST /v1/disks/{ref}/clone.
type CloneRequest struct {
	Name string `json:"name"` // the new disk
}

// CreateReplicaRequest is the body of POST /v1/disks/{name}/replicas.
type CreateReplicaRequest struct {
	Name string `json:"name,omitempty"` // "" picks a timestamp name
}

// RemoveDiskResult is the answer to DELETE /v1/disks/{name}?force=true.
type RemoveDiskResult struct {
	// Kept names the replica of the disk that holds its head as it was
	// removed: every write that returned before.
	Kept string `json:"kept"`
	// Users are who used the disk and were cut off (NBD connections
	// closed, open files and loop devices failing with EIO).
	Users []string `json:"users"`
}

// ScrubResult is what a scrub found.
type ScrubResult struct {
	Checked int64          `json:"checked"` // blocks read and verified
	Bytes   int64          `json:"bytes"`
	Corrupt []CorruptBlock `json:"corrupt"` // never null
}

// CorruptBlock names a block whose bytes do not match its CID.
type CorruptBlock struct {
	CID   string `json:"cid"`
	Error string `json:"error"`
	// Repaired says a good copy from another node replaced the block.
	Repaired bool `json:"repaired"`
}

// errorBody is the JSON body of every error response.
type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}
