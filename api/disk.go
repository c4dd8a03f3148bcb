package api

import (
	"fmt"
	"strings"
	"time"
)

// Block sizes and replication factors a disk may use: the daemon's volume
// manager enforces the same (a test in node checks they agree).
const (
	MinBlockSize     = 4 << 10
	MaxBlockSize     = 4 << 20
	DefaultBlockSize = 64 << 10
	DefaultReplicas  = 2
	MaxReplicas      = 16
)

// Ref names a disk head ("web") or one of its replicas ("web@monday").
type Ref struct {
	Disk    string
	Replica string // empty for the head
}

// ParseRef parses "DISK" or "DISK@REPLICA". It only splits: the daemon
// checks the names and answers ErrInvalid for a bad one.
func ParseRef(s string) (Ref, error) {
	disk, rep, found := strings.Cut(s, "@")
	if disk == "" || found && rep == "" {
		return Ref{}, fmt.Errorf("%q: want DISK or DISK@REPLICA: %w", s, ErrInvalid)
	}
	return Ref{Disk: disk, Replica: rep}, nil
}

func (r Ref) String() string {
	if r.Replica == "" {
		return r.Disk
	}
	return r.Disk + "@" + r.Replica
}

// DiskSpec describes a disk to create.
type DiskSpec struct {
	Name      string
	Size      int64 // bytes; a multiple of BlockSize
	BlockSize int64 // 0 means DefaultBlockSize
	Replicas  int   // 0 means DefaultReplicas
	// Sync makes every flush wait until Replicas nodes of the mesh hold
	// the data; otherwise replication runs behind.
	Sync bool
	// Creator names the client that makes the disk, such as CreatorCSI,
	// and comes back in DiskInfo.Creator; "" for any other (the CLI).
	// Up to 32 letters, digits, '.', '_' and '-'.
	Creator string
}

// CreatorCSI is the Creator of the disks the CSI driver makes: the only
// ones it deletes, or answers as an existing volume.
const CreatorCSI = "csi"

// DiskInfo describes a disk head. Field names are part of the CLI's JSON
// contract.
type DiskInfo struct {
	Name      string `json:"name"`
	Size      int64  `json:"size"`
	BlockSize int64  `json:"block_size"`
	Replicas  int    `json:"replicas"`
	Sync      bool   `json:"sync"`
	Root      string `json:"root"` // CID of the last committed block map; "" when empty
	UsedBytes int64  `json:"used_bytes"`
	// DirtyBytes is data written but not yet committed to the block store.
	DirtyBytes int64 `json:"dirty_bytes"`
	// CommitError is why the disk's last commit failed ("" once one
	// succeeds), such as out of space; the dirty bytes wait meanwhile.
	CommitError string `json:"commit_error,omitempty"`
	// UnderReplicated counts the disk's blocks that fewer than Replicas
	// nodes are confirmed to hold; it is never 0 before they confirmed.
	// A single node holds one copy of each block; a node of a mesh
	// completes the figure from its redundancy account.
	UnderReplicated int64 `json:"under_replicated"`
	ReplicaCount    int   `json:"replica_count"`
	// Owner is the peer ID of the node that may write the disk and Epoch
	// its ownership epoch; both are empty on a node without a mesh.
	Owner string `json:"owner,omitempty"`
	Epoch uint64 `json:"epoch,omitempty"`
	// HeldRoot is the newest root whose blocks the disk's placement sets
	// confirmed in full: a take after the owner's death starts from it.
	// On an async disk it trails Root until the push of Root is done.
	HeldRoot  string    `json:"held_root,omitempty"`
	Created   time.Time `json:"created"`
	Committed time.Time `json:"committed"`
	// Allow lists the client networks (CIDR) that may open the disk over
	// NBD; empty means any client that can reach the listener.
	Allow []string `json:"allow,omitempty"`
	// Initiators lists the iSCSI initiator names that may log in to the
	// disk's targets; empty means any.
	Initiators []string `json:"initiators,omitempty"`
	// CHAPUser is the CHAP name iSCSI initiators log in with ("" when CHAP
	// is off); CHAPTargetUser the target's name for mutual CHAP.
	CHAPUser       string `json:"chap_user,omitempty"`
	CHAPTargetUser string `json:"chap_target_user,omitempty"`
	// CHAPMissing: iSCSI logins need CHAP (the disk's previous owner had
	// secrets, which stay on their node) and none is set here, so every
	// login is refused until `weft disk chap` sets one on this node.
	CHAPMissing bool `json:"chap_missing,omitempty"`
	// Origin is the ref the disk was cloned from (DISK, DISK@REPLICA or
	// NAME@N of a spacesuit), kept in the holding node's catalog; "" for a
	// disk made empty or imported, and for a disk adopted from another
	// node (the mesh's catalog does not carry it).
	Origin string `json:"origin,omitempty"`
	// Creator names the client that made (or cloned) the disk
	// (DiskSpec.Creator), kept in the holding node's catalog like Origin
	// and lost like it when the disk is adopted from another node; ""
	// for a disk the CLI made, and for disks made before weft kept it.
	Creator string `json:"creator,omitempty"`
}

// ReplicaInfo describes a replica: a named, timestamped root.
type ReplicaInfo struct {
	Disk      string    `json:"disk"`
	Name      string    `json:"name"`
	Root      string    `json:"root"`
	Size      int64     `json:"size"`
	BlockSize int64     `json:"block_size"`
	UsedBytes int64     `json:"used_bytes"`
	Created   time.Time `json:"created"`
}

// RestoreResult says what a restore did.
type RestoreResult struct {
	Disk DiskInfo `json:"disk"`
	// Backup names the replica taken of the head before it moved, so that
	// time travel never loses the present; "" when the head was already
	// saved in a replica.
	Backup string `json:"backup"`
}

// SpacesuitInfo describes a spacesuit version. Field names are part of the
// CLI's JSON contract.
type SpacesuitInfo struct {
	Name      string    `json:"name"`
	Version   uint64    `json:"version"`
	Ref       string    `json:"ref"` // NAME@VERSION
	Root      string    `json:"root"`
	Size      int64     `json:"size"`
	BlockSize int64     `json:"block_size"`
	Source    string    `json:"source"`
	Created   time.Time `json:"created"`
	Owner     string    `json:"owner,omitempty"` // the node that published it (mesh)
}

// GCStats says what a collection did.
type GCStats struct {
	Roots       int           `json:"roots"`
	Marked      int64         `json:"marked"`
	SweptBlocks int64         `json:"swept_blocks"`
	SweptBytes  int64         `json:"swept_bytes"`
	Reclaimed   int64         `json:"reclaimed_bytes"`
	Duration    time.Duration `json:"duration_ns"`
}

// HealStatus is self-heal's progress, as the daemon's status reports it.
type HealStatus struct {
	Running bool  `json:"running"`
	Passes  int64 `json:"passes"`
	// LastPass is when the last complete pass ended.
	LastPass time.Time `json:"last_pass"`
	// Pending is what the running pass still has to copy here.
	Pending      int64 `json:"pending_blocks"`
	CopiedBlocks int64 `json:"copied_blocks"`
	CopiedBytes  int64 `json:"copied_bytes"`
	// FetchSeconds is the time spent copying, summed over the passes that
	// copied anything: CopiedBytes over it is heal's copy rate.
	FetchSeconds float64 `json:"fetch_seconds"`
	// DroppedBlocks are surplus copies removed after their placement set
	// confirmed them.
	DroppedBlocks int64  `json:"dropped_blocks"`
	LastError     string `json:"last_error,omitempty"`
}
