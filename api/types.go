package api

import "time"

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
	// ISCSI is the address the iSCSI target listens on ("" when disabled);
	// ISCSISessions counts its logged-in sessions.
	ISCSI         string `json:"iscsi,omitempty"`
	ISCSISessions int    `json:"iscsi_sessions"`
	// Goroutines is the daemon's goroutine count, for leak checks.
	Goroutines int `json:"goroutines"`
	// Mounts are the FUSE mounts of the node's disks, by directory.
	Mounts []MountInfo `json:"mounts"`
	// Members is the mesh as this node sees it; Heal is self-heal's
	// progress. UnderReplicated is the sum of the under_replicated
	// figures of the disks `disk ls` lists at the same instant (local
	// and, on a mesh, the catalog's other disks): a block counts until R
	// live members confirmed holding it.
	Members         []Peer      `json:"members"`
	UnderReplicated int64       `json:"under_replicated"`
	Heal            *HealStatus `json:"heal,omitempty"`
	// Space is the free space of the file system holding the home.
	Space SpaceStatus `json:"space"`
}

// SpaceStatus is the free space of the file system holding a node's home
// (its block store and write overlays) and what it allows. State is "ok";
// "low", below ReserveBytes: blocks stored for other nodes are refused;
// or "full", below the block store's floor: commits fail and clients get
// ENOSPC once the overlays cannot grow. It is read afresh each time, so
// it clears as soon as space comes back.
type SpaceStatus struct {
	FreeBytes    int64  `json:"free_bytes"`
	ReserveBytes int64  `json:"reserve_bytes"`
	State        string `json:"state"`
}

// SpaceStatus states.
const (
	SpaceOK   = "ok"
	SpaceLow  = "low"
	SpaceFull = "full"
)

// ACLRequest is the body of PUT /v1/disks/{name}/acl: each list given
// replaces the disk's (an empty one allows any client), a list left out
// stays as it is, and both change together or neither does. A request
// with neither list is invalid.
type ACLRequest struct {
	Allow      *[]string `json:"allow,omitempty"`      // client networks, CIDR, for NBD TCP and iSCSI
	Initiators *[]string `json:"initiators,omitempty"` // iSCSI initiator names
}

// CHAPRequest is the body of PUT /v1/disks/{name}/chap. An empty User
// turns CHAP off.
type CHAPRequest struct {
	User         string `json:"user"`
	Secret       string `json:"secret"`
	TargetUser   string `json:"target_user,omitempty"`
	TargetSecret string `json:"target_secret,omitempty"`
}

// CreateDiskRequest is the body of POST /v1/disks.
type CreateDiskRequest struct {
	Name      string `json:"name"`
	Size      int64  `json:"size"`
	BlockSize int64  `json:"block_size,omitempty"`
	Replicas  int    `json:"replicas,omitempty"`
	Sync      bool   `json:"sync,omitempty"`
	Creator   string `json:"creator,omitempty"` // DiskSpec.Creator
}

// CloneRequest is the body of POST /v1/disks/{ref}/clone.
type CloneRequest struct {
	Name    string `json:"name"`              // the new disk
	Creator string `json:"creator,omitempty"` // DiskSpec.Creator
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
	// Dropped says no node had a good copy and no live root reaches the
	// block: it was garbage, and was deleted.
	Dropped bool `json:"dropped"`
}

// IDInfo is the answer of GET /v1/id.
type IDInfo struct {
	PeerID string   `json:"peer_id"`
	Addrs  []string `json:"addrs"`
}

// JoinRequest is the body of POST /v1/join.
type JoinRequest struct {
	Addrs []string `json:"addrs"`
}

// JoinResult says how many of the addresses answered.
type JoinResult struct {
	Joined  int `json:"joined"`
	Members int `json:"members"`
}

// Peer is one member of the mesh. Field names are part of the CLI's JSON
// contract.
type Peer struct {
	PeerID string   `json:"peer_id"`
	Site   string   `json:"site"`
	State  string   `json:"state"`
	Addrs  []string `json:"addrs"`
	Used   int64    `json:"used"`
	Free   int64    `json:"free"`
	Self   bool     `json:"self"`
}

// MoveRequest is the body of POST /v1/disks/{name}/move.
type MoveRequest struct {
	To string `json:"to"` // peer ID
}

// TakeRequest is the body of POST /v1/disks/{name}/take.
type TakeRequest struct {
	// Force takes the disk even when its owner is alive: the owner is
	// fenced and its diverging writes are kept as a replica.
	Force bool `json:"force,omitempty"`
}

// MountRequest is the body of POST /v1/mounts.
type MountRequest struct {
	Dir string `json:"dir"` // absolute path of an existing directory
}

// MountInfo describes a FUSE mount of the node's disks. Field names are
// part of the CLI's JSON contract.
type MountInfo struct {
	Dir     string    `json:"dir"`
	Started time.Time `json:"started"`
}

// FileProgress is one line of the newline-delimited JSON stream that
// answers an import or export of a passed file: progress lines with Bytes
// done of Total, then one final line with Disk (import), Export or Error.
type FileProgress struct {
	Bytes  int64         `json:"bytes"`
	Total  int64         `json:"total"`
	Disk   *DiskInfo     `json:"disk,omitempty"`
	Export *ExportResult `json:"export,omitempty"`
	Error  string        `json:"error,omitempty"`
	Code   string        `json:"code,omitempty"`
}

// ExportResult is the outcome of an export into a passed file.
type ExportResult struct {
	Size int64 `json:"size"` // the disk's size: the file's length
	Data int64 `json:"data"` // bytes written; the rest of the file is holes
}
