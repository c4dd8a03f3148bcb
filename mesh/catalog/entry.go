package catalog

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/internal/accesslist"
)

// ErrInvalid is returned for an entry that breaks the catalog's rules: a
// malformed key, a missing root, a bad peer ID and the like.
var ErrInvalid = errors.New("invalid catalog entry")

// ErrFenced is returned when a write carries a lower ownership epoch than
// the catalog already holds for its key: the writer has lost ownership.
var ErrFenced = errors.New("fenced: ownership epoch is stale")

// Key prefixes of the four kinds of entries.
const (
	DiskPrefix      = "disk/"
	ReplicaPrefix   = "replica/"
	SpacesuitPrefix = "spacesuit/"
	// ReplicatePrefix keys a scheduled replication policy:
	// "replicate/DISK/SITE" when the disk's owner pushes it to the site,
	// "replicate/DISK/SITE/pull" when a node of the site pulls it, so
	// that both can exist. Its root is the last replicated root.
	ReplicatePrefix = "replicate/"
	pullSuffix      = "/pull"
)

// ReplicateKey returns the key of the policy by which the owner of disk
// pushes it to site. Records written before pull policies had keys of
// their own may hold a pull policy here too (the policy says which).
func ReplicateKey(disk, site string) string { return ReplicatePrefix + disk + "/" + site }

// ReplicatePullKey returns the key of the policy by which a node of site
// pulls disk.
func ReplicatePullKey(disk, site string) string { return ReplicateKey(disk, site) + pullSuffix }

const (
	maxNameLen   = 128
	maxPeerIDLen = 128 // base58 of the longest peer IDs in use is ~60
	maxCIDLen    = 128 // a CIDv1 with a 64-byte digest needs ~70
	maxVersion   = math.MaxInt64
)

// Entry is one version of one catalog key.
type Entry struct {
	Key  string  // "disk/NAME", "replica/DISK/NAME", "spacesuit/NAME@N" or "replicate/DISK/SITE[/pull]"
	Root cid.Cid // cid.Undef only for an empty disk or a tombstone
	// Held is, for a disk, the newest root whose blocks its placement sets
	// confirmed in full (Root itself once its push is done; always Root
	// for a sync disk); cid.Undef until a first push is confirmed. A take
	// starts from it: the blocks of a newer root may be on the old owner
	// alone.
	Held      cid.Cid
	Owner     string // peer ID (base58) of the node that may write this disk; for replicas/spacesuits the node that created it
	Epoch     uint64 // ownership epoch: a takeover or handover raises it; it fences the old owner
	Version   uint64 // Lamport clock value of this write
	Writer    string // peer ID (base58) of the node that wrote this version (tie-breaker)
	Deleted   bool   // tombstone, so deletions converge too
	Size      int64  // disk size in bytes
	BlockSize int64
	Replicas  int // R
	Sync      bool
	Created   time.Time
	Modified  time.Time
	// Policy is the opaque settings and state of a replication policy
	// (JSON owned by the node that runs it), at most MaxPolicy bytes.
	Policy []byte
	// Allow, Initiators and CHAP are, for a disk, who may open it (its
	// access lists, in accesslist's canonical form; nil allows any) and
	// whether its iSCSI logins need CHAP, so that they travel with the
	// disk to its next owner. The CHAP secrets never travel: a new owner
	// without them refuses every iSCSI login until an operator sets some
	// there.
	Allow      []string
	Initiators []string
	CHAP       bool
	// Origin and Creator are, for a disk, the ref it was cloned from
	// (DISK, DISK@REPLICA or NAME@N of a spacesuit; "" for a disk made
	// empty) and the client that made it (up to MaxCreatorLen characters
	// of a name; "" for the CLI), so that they travel with the disk to
	// its next owner: the CSI driver compares the one and adopts or
	// removes only disks whose other is its own.
	Origin  string
	Creator string
}

// MaxCreatorLen bounds Entry.Creator, as the volumes bound a disk's
// creator.
const MaxCreatorLen = 32

// MaxPolicy bounds Entry.Policy.
const MaxPolicy = 4 << 10

// DiskKey returns the key of the disk named name.
func DiskKey(name string) string { return DiskPrefix + name }

// ReplicaKey returns the key of replica name of disk.
func ReplicaKey(disk, name string) string { return ReplicaPrefix + disk + "/" + name }

// SpacesuitKey returns the key of version n of spacesuit name.
func SpacesuitKey(name string, n uint64) string {
	return SpacesuitPrefix + name + "@" + strconv.FormatUint(n, 10)
}

// ValidateKey returns an error wrapping ErrInvalid unless key is a well-formed
// disk, replica, spacesuit or replication policy key.
func ValidateKey(key string) error {
	var ok bool
	switch {
	case strings.HasPrefix(key, DiskPrefix):
		ok = validName(key[len(DiskPrefix):])
	case strings.HasPrefix(key, ReplicaPrefix):
		disk, name, found := strings.Cut(key[len(ReplicaPrefix):], "/")
		ok = found && validName(disk) && validName(name)
	case strings.HasPrefix(key, ReplicatePrefix):
		disk, rest, found := strings.Cut(key[len(ReplicatePrefix):], "/")
		site, mode, moded := strings.Cut(rest, "/")
		ok = found && validName(disk) && validName(site) && (!moded || "/"+mode == pullSuffix)
	case strings.HasPrefix(key, SpacesuitPrefix):
		name, n, found := strings.Cut(key[len(SpacesuitPrefix):], "@")
		v, err := strconv.ParseUint(n, 10, 64)
		ok = found && validName(name) && err == nil && strconv.FormatUint(v, 10) == n
	}
	if !ok {
		return fmt.Errorf("key %.200q: %w", key, ErrInvalid)
	}
	return nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > maxNameLen || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validRef checks the form of a disk's origin: a disk's name, or a
// replica's or a spacesuit version's (NAME@NAME, NAME@N).
func validRef(s string) bool {
	name, at, found := strings.Cut(s, "@")
	return validName(name) && (!found || validName(at))
}

// validPeerID checks the shape of a peer ID's string form (base58btc), not
// that it decodes: the catalog only compares and stores them.
func validPeerID(s string) bool {
	if len(s) == 0 || len(s) > maxPeerIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune(base58Alphabet, rune(s[i])) {
			return false
		}
	}
	return true
}

const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// validate checks e, which must be normalized, against the catalog's rules.
func (e Entry) validate() error {
	if err := ValidateKey(e.Key); err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("entry %s: %s: %w", e.Key, fmt.Sprintf(format, args...), ErrInvalid)
	}
	if len(e.Policy) > MaxPolicy {
		return bad("policy of %d bytes, max %d", len(e.Policy), MaxPolicy)
	}
	for _, f := range []struct {
		name string
		c    cid.Cid
	}{{"root", e.Root}, {"held root", e.Held}} {
		name, c := f.name, f.c
		if !c.Defined() {
			continue
		}
		b := c.Bytes()
		if len(b) > maxCIDLen {
			return bad("%s CID of %d bytes, max %d", name, len(b), maxCIDLen)
		}
		if _, err := cid.Cast(b); err != nil {
			return bad("%s: %v", name, err)
		}
	}
	if e.Held.Defined() && !strings.HasPrefix(e.Key, DiskPrefix) {
		return bad("a held root on a record that is not a disk's")
	}
	if (e.Allow != nil || e.Initiators != nil || e.CHAP) && !strings.HasPrefix(e.Key, DiskPrefix) {
		return bad("access rules on a record that is not a disk's")
	}
	if err := accesslist.CheckCanonical(e.Allow, e.Initiators); err != nil {
		return bad("%v", err)
	}
	if (e.Origin != "" || e.Creator != "") && !strings.HasPrefix(e.Key, DiskPrefix) {
		return bad("an origin or creator on a record that is not a disk's")
	}
	if e.Origin != "" && !validRef(e.Origin) {
		return bad("origin %.200q is not a ref (NAME or NAME@NAME)", e.Origin)
	}
	if e.Creator != "" && (len(e.Creator) > MaxCreatorLen || !validName(e.Creator)) {
		return bad("creator %.200q is not a name of at most %d characters", e.Creator, MaxCreatorLen)
	}
	if !e.Root.Defined() && e.Held.Defined() {
		return bad("a held root without a root")
	}
	if !e.Root.Defined() && !e.Deleted && !strings.HasPrefix(e.Key, DiskPrefix) && !strings.HasPrefix(e.Key, ReplicatePrefix) {
		// Only a disk (no block written yet) or a policy (nothing
		// replicated yet) can be without a root; a replica or spacesuit
		// always names one.
		return bad("no root")
	}
	if !validPeerID(e.Owner) {
		return bad("owner %.200q is not a peer ID", e.Owner)
	}
	if !validPeerID(e.Writer) {
		return bad("writer %.200q is not a peer ID", e.Writer)
	}
	if e.Version == 0 || e.Version > maxVersion {
		return bad("version %d out of range [1, %d]", e.Version, uint64(maxVersion))
	}
	if e.Size < 0 || e.BlockSize < 0 || e.Replicas < 0 {
		return bad("negative size %d, block size %d or replicas %d", e.Size, e.BlockSize, e.Replicas)
	}
	for _, t := range []time.Time{e.Created, e.Modified} {
		if !t.IsZero() && !time.Unix(0, t.UnixNano()).Equal(t) {
			return bad("time %v not representable in Unix nanoseconds", t)
		}
	}
	return nil
}

// normalized returns e with its times in UTC and without monotonic clock
// readings, the form in which the catalog stores and decodes them, so that
// equal entries are equal values.
func (e Entry) normalized() Entry {
	e.Created = e.Created.UTC()
	e.Modified = e.Modified.UTC()
	if len(e.Policy) == 0 {
		e.Policy = nil // the wire form omits an empty policy, and empty lists
	}
	if len(e.Allow) == 0 {
		e.Allow = nil
	}
	if len(e.Initiators) == 0 {
		e.Initiators = nil
	}
	return e
}

// compare orders two versions of the same key: a positive result means a is
// newer. Versions compare equal only if every field is equal.
func compare(a, b Entry) int {
	return cmp.Or(
		cmp.Compare(a.Epoch, b.Epoch),
		cmp.Compare(a.Version, b.Version),
		strings.Compare(a.Writer, b.Writer),
		bytes.Compare(a.Root.Bytes(), b.Root.Bytes()),
		bytes.Compare(a.Held.Bytes(), b.Held.Bytes()),
		// Only a writer that reused a version number (it lost its state,
		// or it is broken) gets this far; still, every node must choose
		// the same winner.
		compareBool(a.Deleted, b.Deleted),
		strings.Compare(a.Owner, b.Owner),
		cmp.Compare(a.Size, b.Size),
		cmp.Compare(a.BlockSize, b.BlockSize),
		cmp.Compare(a.Replicas, b.Replicas),
		compareBool(a.Sync, b.Sync),
		a.Created.Compare(b.Created),
		a.Modified.Compare(b.Modified),
		bytes.Compare(a.Policy, b.Policy),
		slices.Compare(a.Allow, b.Allow),
		slices.Compare(a.Initiators, b.Initiators),
		compareBool(a.CHAP, b.CHAP),
		strings.Compare(a.Origin, b.Origin),
		strings.Compare(a.Creator, b.Creator),
	)
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	default:
		return -1
	}
}
