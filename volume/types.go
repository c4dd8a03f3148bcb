package volume

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/weft-mesh/weft/blockstore"
)

// Errors returned by the Manager. Check them with errors.Is; the message of
// the wrapping error names the disk or replica.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrInvalid  = errors.New("invalid argument")
	ErrReadOnly = errors.New("read-only")
	// ErrNoSpace is blockstore.ErrNoSpace, so one check covers both layers.
	ErrNoSpace = blockstore.ErrNoSpace
)

// Block sizes and replication factors a disk may use.
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

// ParseRef parses "DISK" or "DISK@REPLICA".
func ParseRef(s string) (Ref, error) {
	disk, rep, found := strings.Cut(s, "@")
	r := Ref{Disk: disk, Replica: rep}
	if err := ValidateName(disk); err != nil {
		return Ref{}, err
	}
	if found {
		if err := ValidateName(rep); err != nil {
			return Ref{}, err
		}
	}
	return r, nil
}

func (r Ref) String() string {
	if r.Replica == "" {
		return r.Disk
	}
	return r.Disk + "@" + r.Replica
}

// ValidateName checks a disk or replica name: 1 to 128 characters of
// letters, digits, '.', '_' and '-', not starting with '.' or '-'.
func ValidateName(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("name %q: must be 1 to 128 characters: %w", name, ErrInvalid)
	}
	if name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("name %q: must not start with %q: %w", name, name[0], ErrInvalid)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			return fmt.Errorf("name %q: character %q not allowed (letters, digits, . _ -): %w", name, r, ErrInvalid)
		}
	}
	return nil
}

// ValidCreator checks a disk's creator (DiskSpec.Creator): "" or, like a
// name (ValidateName), up to 32 characters.
func ValidCreator(creator string) error {
	if creator == "" {
		return nil
	}
	if len(creator) > 32 {
		return fmt.Errorf("creator %q: longer than 32 characters: %w", creator, ErrInvalid)
	}
	if err := ValidateName(creator); err != nil {
		return fmt.Errorf("creator: %w", err)
	}
	return nil
}

// DiskSpec describes a disk to create.
type DiskSpec struct {
	Name      string
	Size      int64 // bytes; a multiple of BlockSize
	BlockSize int64 // 0 means DefaultBlockSize
	Replicas  int   // 0 means DefaultReplicas
	// Sync makes every flush wait until Replicas nodes of the mesh hold
	// the data (see Config.SyncFlush); otherwise replication runs behind.
	Sync bool
	// Origin is the ref a clone was made from (DISK, DISK@REPLICA or
	// NAME@N of a spacesuit); "" for a disk made empty or imported.
	Origin string
	// Creator names the client that made the disk (ValidCreator), such
	// as "csi" for the CSI driver, so that it can tell its own disks from
	// others of the same name; "" for any other (the CLI).
	Creator string
	// Access is the rules of a disk adopted from another owner, in
	// accesslist's canonical form (ErrInvalid otherwise); the zero value
	// allows any client.
	Access Access
}

// DiskInfo describes a disk head as this node's volumes know it; the
// daemon answers with api.DiskInfo, which adds what the mesh knows.
type DiskInfo struct {
	Name      string
	Size      int64
	BlockSize int64
	Replicas  int
	Sync      bool
	Root      cid.Cid // the last committed block map; cid.Undef when empty
	UsedBytes int64
	// DirtyBytes is data written but not yet committed to the block store.
	DirtyBytes int64
	// CommitError is why the last commit failed ("" once one succeeds):
	// the dirty bytes wait in the overlay meanwhile.
	CommitError  string
	ReplicaCount int
	Created      time.Time
	Committed    time.Time
	// Allow lists the client networks (CIDR) that may open the disk over
	// NBD or iSCSI; empty means any client that can reach the listener.
	Allow []string
	// Initiators lists the iSCSI initiator names that may log in to the
	// disk's targets; empty means any.
	Initiators []string
	// CHAPUser is the CHAP name iSCSI initiators must log in with ("" when
	// CHAP is off), CHAPTargetUser the name the target answers mutual
	// CHAP with. The secrets are never in DiskInfo.
	CHAPUser, CHAPTargetUser string
	// CHAPMissing is set when iSCSI logins need CHAP (the disk's previous
	// owner had secrets, which never leave a node) and none is set here:
	// every login is refused until SetCHAP sets some.
	CHAPMissing bool
	// Origin is the ref the disk was cloned from, as DiskSpec.Origin.
	Origin string
	// Creator names the client that made the disk, as DiskSpec.Creator.
	Creator string
}

// ReplicaInfo describes a replica: a named, timestamped root.
type ReplicaInfo struct {
	Disk      string
	Name      string
	Root      cid.Cid
	Size      int64
	BlockSize int64
	UsedBytes int64
	Created   time.Time
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
