package cluster

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/internal/errkind"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/volume"
)

// ErrConflict is matched (errors.Is) by a request the mesh's state does not
// allow now, such as taking a disk whose owner is alive. Requests that are
// wrong whatever the state match volume.ErrInvalid, and those naming
// something the mesh does not have match volume.ErrNotFound, so that the
// node answers all three with the codes it always has.
var ErrConflict = errors.New("conflict")

// Kind says what a local volume record is.
type Kind uint8

// The kinds of local records.
const (
	KindDisk      Kind = iota // a disk head
	KindReplica               // a replica of a disk
	KindSpacesuit             // a spacesuit version
)

func (k Kind) String() string {
	switch k {
	case KindDisk:
		return "disk"
	case KindReplica:
		return "replica"
	case KindSpacesuit:
		return "spacesuit"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Local is one record the local volumes hold (a volume.Record), keyed as
// the catalog keys it.
type Local struct {
	Key  string // catalog key: DiskKey, ReplicaKey or SpacesuitKey
	Kind Kind
	Disk string // the disk's or spacesuit's name
	Name string // the replica's name or the spacesuit's version; "" for a head
	Root cid.Cid
	Size int64
	// BlockSize, Replicas, Sync and Created are the record's; Created is
	// when the record was made here (for an adopted disk, its adoption).
	BlockSize int64
	Replicas  int
	Sync      bool
	Created   time.Time
	// Access is a head's rules, published in its record so that they
	// travel with the disk to its next owner.
	Access volume.Access
	// Origin and Creator are a head's (volume.DiskSpec.Origin, Creator),
	// published in its record to travel the same way.
	Origin  string
	Creator string
}

// Locals keys the volume records as the catalog keys them: a head as
// DiskKey(disk), a replica as ReplicaKey(disk, name) and a spacesuit
// version as SpacesuitKey(name, version). Should two records share a key,
// the later one counts.
func Locals(rs []volume.Record) map[string]Local {
	out := make(map[string]Local, len(rs))
	for _, r := range rs {
		l := Local{
			Key: catalog.DiskKey(r.Disk), Kind: KindDisk, Disk: r.Disk, Name: r.Replica,
			Root: r.Root, Size: r.Size, BlockSize: r.BlockSize, Replicas: r.Replicas, Sync: r.Sync, Created: r.Created,
			Access: r.Access, Origin: r.Origin, Creator: r.Creator,
		}
		switch {
		case r.Spacesuit:
			// A version that does not parse keys as version 0, which the
			// catalog refuses: such a record is never published.
			v, _ := strconv.ParseUint(r.Replica, 10, 64)
			l.Key, l.Kind = catalog.SpacesuitKey(r.Disk, v), KindSpacesuit
		case r.Replica != "":
			l.Key, l.Kind = catalog.ReplicaKey(r.Disk, r.Replica), KindReplica
		}
		out[l.Key] = l
	}
	return out
}

// Pushes is the state of a disk's asynchronous replication.
type Pushes struct {
	Pushed  cid.Cid // the last root pushed in full
	Tried   cid.Cid // the last root whose push failed: heal passes copy what it missed
	Pushing bool    // a push is under way
}

// View is what a decision looks at, as one consistent snapshot.
type View struct {
	Self    string                   // this node's peer ID in the catalog's form (meshnet.PeerID.String)
	Catalog map[string]catalog.Entry // every key's newest version, tombstones included
	Local   map[string]Local         // by catalog key (Locals)
	Pushes  map[string]Pushes        // by disk name
	// TombSeen is, per key whose catalog version is a tombstone, when
	// this node first saw that tombstone, on its own clock (the clock of
	// the Locals' Created): a late tombstone (row D11) is told from a
	// name reused after the removal without comparing two nodes' clocks.
	TombSeen map[string]time.Time
}

// Op is what an Action does.
type Op uint8

// The operations a decision asks of its driver.
const (
	// OpAdopt creates the disk Entry hands to this node, at Entry.Root,
	// with the disk's live replicas from the catalog; a head or replica
	// that exists already is kept.
	OpAdopt Op = iota
	// OpGiveUp commits the head Local and removes it, because Entry (the
	// catalog's version) says another node owns the disk. If the committed
	// root is neither empty nor Entry.Root, the writes the owner lacks are
	// kept first in a replica named fenced-e<Entry.Epoch>-<node>-<time>.
	OpGiveUp
	// OpForget removes the replica or spacesuit version Local, which
	// another node removed from the mesh (Entry is its tombstone).
	OpForget
	// OpPublish writes Entry (catalog Put) and broadcasts it. If the Put
	// fails with catalog.ErrFenced for a head, the driver gives the head
	// up against a fresh Lookup of the key: Entry is this pass's intent,
	// and the version that fenced it arrived after the View was taken.
	OpPublish
	// OpTombstone deletes Entry.Key at Entry.Epoch (catalog Delete) and
	// broadcasts the tombstone: this node wrote it and holds it no more.
	OpTombstone
	// OpReplicate pushes the head Local's root to its placement sets in
	// the background. The driver skips it for a head it gave up while
	// applying this pass (a Publish refused as fenced).
	OpReplicate
	// OpAddReplica adds the replica Entry names to the local volumes, at
	// Entry.Root: another node published it for a disk this node owns and
	// holds (the fenced replica an old owner keeps when it gives up a disk
	// taken from it), so that the owner lists and restores it like the
	// replicas it made or adopted. Its blocks stay where they are until
	// read or healed.
	OpAddReplica
)

func (o Op) String() string {
	switch o {
	case OpAdopt:
		return "adopt"
	case OpGiveUp:
		return "give-up"
	case OpForget:
		return "forget"
	case OpPublish:
		return "publish"
	case OpTombstone:
		return "tombstone"
	case OpReplicate:
		return "replicate"
	case OpAddReplica:
		return "add-replica"
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// Action is one step a decision asks of its driver. Entry and Local are set
// as each Op says; the other is the zero value.
type Action struct {
	Op    Op
	Key   string
	Entry catalog.Entry
	Local Local
}

// Decide returns what keeps the catalog and the local volumes in agreement
// (a reconcile pass), in the order to apply them:
//
//  1. adopts, by key: disks the catalog hands to this node; then replica
//     additions, by key: replicas other nodes published of the disks this
//     node owns and holds;
//  2. for each local record, by key: a forget, a give-up or a publish;
//  3. tombstones, by key: what this node wrote and no longer holds;
//  4. replicates, by key: new roots of the heads this node keeps.
//
// The decision only reads v. Apply the actions under the same lock the
// View was taken under: a take must hold that lock across its Put and its
// adopt, because a disk this node owns and wrote but does not hold is one
// it removed, and Decide tombstones it (it cannot tell a take not yet
// adopted from a removal).
//
// When two nodes take the same disk at the same epoch (both saw its owner
// dead), the catalog keeps the take with the higher Lamport version, then
// the larger writer: the later writer wins, not the first taker, and the
// other node gives its head up into a fenced replica once it sees it.
func Decide(v View) []Action {
	return decide(v, func(string) bool { return true })
}

// DecideKeys is Decide for the given keys only: what a targeted publish (a
// flush, a command's own record) applies without a whole pass.
func DecideKeys(v View, keys ...string) []Action {
	want := make(map[string]bool, len(keys))
	for _, k := range keys {
		want[k] = true
	}
	return decide(v, func(k string) bool { return want[k] })
}

func decide(v View, want func(key string) bool) []Action {
	var out []Action
	catKeys := slices.Sorted(maps.Keys(v.Catalog))
	localKeys := slices.Sorted(maps.Keys(v.Local))

	// Disks handed to this node by their previous owner.
	for _, key := range catKeys {
		if want(key) && adopts(v, key) {
			out = append(out, Action{Op: OpAdopt, Key: key, Entry: v.Catalog[key]})
		}
	}
	for _, key := range catKeys {
		if want(key) && addsReplica(v, key) {
			out = append(out, Action{Op: OpAddReplica, Key: key, Entry: v.Catalog[key]})
		}
	}

	givenUp := map[string]bool{}
	for _, key := range localKeys {
		if !want(key) {
			continue
		}
		a, ok := decideLocal(v, v.Local[key])
		if !ok {
			continue
		}
		if a.Op == OpGiveUp {
			givenUp[key] = true
		}
		out = append(out, a)
	}

	// What this node published and no longer holds was removed here.
	for _, key := range catKeys {
		e := v.Catalog[key]
		if !want(key) || e.Deleted || e.Writer != v.Self || !volumeKey(key) {
			continue
		}
		if _, ok := v.Local[key]; ok {
			continue
		}
		if strings.HasPrefix(key, catalog.DiskPrefix) && e.Owner != v.Self {
			continue // handed over: the new owner publishes it now
		}
		if disk, _, ok := replicaDisk(key); ok && adopts(v, catalog.DiskKey(disk)) {
			// The adopt makes it again from the catalog: tombstoning it
			// would only have the next pass publish it over the tombstone,
			// and its other holders forget their copies meanwhile.
			continue
		}
		out = append(out, Action{Op: OpTombstone, Key: key, Entry: e})
	}

	// Replicate new roots of the heads this node keeps.
	for _, key := range localKeys {
		l := v.Local[key]
		if !want(key) || l.Kind != KindDisk || !l.Root.Defined() || givenUp[key] {
			continue
		}
		p := v.Pushes[l.Disk]
		if p.Pushing || p.Pushed == l.Root || p.Tried == l.Root {
			continue
		}
		out = append(out, Action{Op: OpReplicate, Key: key, Local: l})
	}
	return out
}

// adopts reports whether the disk key is one the catalog hands to this
// node and it does not hold: a pass adopts it.
func adopts(v View, key string) bool {
	e, ok := v.Catalog[key]
	if !ok || !strings.HasPrefix(key, catalog.DiskPrefix) || e.Deleted || e.Owner != v.Self || e.Writer == v.Self {
		return false
	}
	_, held := v.Local[key]
	return !held
}

// addsReplica reports whether the replica key is one another node
// published of a disk this node owns and holds, and this node does not
// hold: a pass adds it. Replicas made before the disk came here arrive
// with its adopt; this is how the owner learns of one published later,
// the fenced replica an old owner keeps once it sees the take. Only
// fenced replicas (isFencedName) are added: another node's replica of the
// disk, such as an archive site's pull-mode state, is that node's to list
// and remove, and an owner listing it would tombstone it on replica rm.
//
// A replica this node removed is never added back: its removal and its
// tombstone are one step under the reconcile lock (Cluster.RemoveReplica),
// so no pass sees the live record of a replica removed here; and one this
// node wrote and no longer holds is tombstoned instead (Decide).
func addsReplica(v View, key string) bool {
	e, ok := v.Catalog[key]
	if !ok || e.Deleted || e.Writer == v.Self || !e.Root.Defined() {
		return false
	}
	disk, name, ok := replicaDisk(key)
	if !ok || !isFencedName(name) {
		return false
	}
	if _, held := v.Local[key]; held {
		return false
	}
	head, held := v.Local[catalog.DiskKey(disk)]
	d, known := v.Catalog[catalog.DiskKey(disk)]
	return held && head.Kind == KindDisk && known && !d.Deleted && d.Owner == v.Self
}

// replicaDisk returns the disk a replica key names and the replica's name.
func replicaDisk(key string) (disk, name string, ok bool) {
	rest, ok := strings.CutPrefix(key, catalog.ReplicaPrefix)
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, "/")
}

// decideLocal decides for one local record: forget it, give it up, publish
// it, or nothing (false).
func decideLocal(v View, l Local) (Action, bool) {
	e, known := v.Catalog[l.Key]
	head := l.Kind == KindDisk
	switch {
	case !head && known && e.Deleted && e.Writer != v.Self:
		// Removed from the mesh by another node (spacesuit rm, replica
		// rm, a replication policy's pruning): forget it here too, or
		// this node would publish it again.
		return Action{Op: OpForget, Key: l.Key, Entry: e, Local: l}, true
	case head && known && !e.Deleted && e.Owner != v.Self:
		// Handed over, or taken while this node was cut off.
		return Action{Op: OpGiveUp, Key: l.Key, Entry: e, Local: l}, true
	case head && known && lateTombstone(e, l, v.Self, v.TombSeen):
		return Action{Op: OpGiveUp, Key: l.Key, Entry: e, Local: l}, true
	case !head && known && !e.Deleted && e.Root == l.Root:
		// A replica is a name for a root, and several nodes may hold it
		// (its owner, the sites it was pushed to): the record its creator
		// published stands, so that the creator's removal is the one that
		// counts, instead of each holder writing it again over small
		// differences in its metadata.
		return Action{}, false
	}
	want := catalog.Entry{
		Key: l.Key, Root: l.Root, Owner: v.Self, Size: l.Size, BlockSize: l.BlockSize,
		Replicas: l.Replicas, Sync: l.Sync, Created: l.Created, Epoch: 1,
	}
	if d, ok := v.Catalog[catalog.DiskKey(l.Disk)]; l.Kind == KindReplica && ok && !d.Deleted && d.Replicas > want.Replicas {
		// A replica is kept at its disk's copies. The volumes know them
		// only while they hold the disk's head, and the fenced replica a
		// give-up keeps is published once the head is gone.
		want.Replicas = d.Replicas
	}
	if head {
		want.Held = heldRoot(v, l, e, known)
		want = withAccess(want, l.Access)
		want.Origin, want.Creator = l.Origin, l.Creator
	}
	if known {
		want.Epoch = max(e.Epoch, 1)
		if !e.Deleted && !head {
			want.Owner = e.Owner
		}
		if !e.Deleted && e.Root == l.Root && e.Held == want.Held && e.Size == l.Size && e.Replicas == want.Replicas && e.Sync == l.Sync &&
			e.Owner == want.Owner && sameAccess(e, want) && e.Origin == want.Origin && e.Creator == want.Creator {
			return Action{}, false
		}
	}
	if !l.Root.Defined() && !head {
		return Action{}, false // a replica of an empty disk: nothing to name
	}
	return Action{Op: OpPublish, Key: l.Key, Entry: want, Local: l}, true
}

// withAccess returns the disk record e carrying the rules a.
func withAccess(e catalog.Entry, a volume.Access) catalog.Entry {
	e.Allow, e.Initiators, e.CHAP = a.Allow, a.Initiators, a.CHAP
	return e
}

// entryAccess returns the rules the disk record e carries.
func entryAccess(e catalog.Entry) volume.Access {
	return volume.Access{Allow: e.Allow, Initiators: e.Initiators, CHAP: e.CHAP}
}

// sameAccess reports whether two records of a disk carry the same rules.
func sameAccess(a, b catalog.Entry) bool {
	return slices.Equal(a.Allow, b.Allow) && slices.Equal(a.Initiators, b.Initiators) && a.CHAP == b.CHAP
}

// heldRoot is the held root (catalog.Entry.Held) of the record of the head
// l this node publishes: the last root of the disk its own pushes had
// confirmed in full, else the one the catalog's live record of this
// node's disk names (a restart forgets the pushes; an adopted disk's is
// the root it was taken or handed over at). It never names a root l's
// history does not reach: the catalog's is kept only while this node owns
// the disk.
func heldRoot(v View, l Local, e catalog.Entry, known bool) cid.Cid {
	switch {
	case !l.Root.Defined():
		return cid.Undef // an empty disk: nothing to take it at
	case v.Pushes[l.Disk].Pushed.Defined():
		return v.Pushes[l.Disk].Pushed
	case known && !e.Deleted && e.Owner == v.Self:
		return e.Held
	}
	return cid.Undef
}

// lateTombstone reports whether e, the catalog's version of the head l, is
// a tombstone another owner wrote that this node saw after l was made here:
// the disk was taken from this node while it was cut off and then removed,
// and the head is a fenced one, to be given up (its writes kept in a fenced
// replica) rather than published again, which would bring the removed disk
// back.
//
// A head made after this node saw the removal is a new disk that reuses the
// name (create checks only the live entries), and is published. The volume
// records carry no epoch, so the two are told apart by time, both on this
// node's clock: the head's Created (when it was made or adopted here)
// against when this node first saw the tombstone (seen). The tombstone's
// Modified is on its writer's clock, and skew between the two would give a
// disk created right after a removal up. A tombstone with no time seen
// counts as older than any head.
func lateTombstone(e catalog.Entry, l Local, self string, seen map[string]time.Time) bool {
	at, ok := seen[e.Key]
	return e.Deleted && e.Owner != self && ok && !l.Created.After(at)
}

// volumeKey reports whether key names something the volumes hold (a disk,
// a replica or a spacesuit version), as opposed to a policy.
func volumeKey(key string) bool {
	return strings.HasPrefix(key, catalog.DiskPrefix) || strings.HasPrefix(key, catalog.ReplicaPrefix) ||
		strings.HasPrefix(key, catalog.SpacesuitPrefix)
}

// DecideMove returns the entry that hands disk to the member to: e (the
// catalog's version of the disk; found false if there is none) with the
// committed root of this node's head, its rules (which the new owner
// applies: the catalog's may predate the last change) and its origin and
// creator (head, the committed head's info), to as its owner and the next
// epoch.
// The error matches volume.ErrInvalid when to is this node,
// volume.ErrNotFound when to is not a live member, and ErrConflict when the
// catalog does not name this node as the owner yet (the head was never
// published, or e is a tombstone): try again after a reconcile.
//
// The driver commits the head before it checks e, so that the check sees
// the root it hands over; it pushes that root to the placement set (too few
// live nodes is no error) before it puts the entry, then announces it.
func DecideMove(disk string, e catalog.Entry, found bool, self, to meshnet.PeerID, toAlive bool, head volume.DiskInfo) (catalog.Entry, error) {
	switch {
	case to == self:
		return catalog.Entry{}, fmt.Errorf("move: disk %q is already on this node: %w", disk, volume.ErrInvalid)
	case !toAlive:
		return catalog.Entry{}, errkind.Errorf(volume.ErrNotFound, "move: %s is not a live member of the mesh", to)
	case !found || e.Deleted || e.Owner != self.String():
		return catalog.Entry{}, errkind.Errorf(ErrConflict, "move: disk %q is not published as owned by this node yet, try again", disk)
	}
	e.Root, e.Owner, e.Epoch = head.Root, to.String(), e.Epoch+1
	e.Origin, e.Creator = head.Origin, head.Creator
	return withAccess(e, head.Access()), nil
}

// DecideTake returns the entry by which this node takes disk over: e (the
// catalog's version of the disk; found false if there is none) with this
// node as its owner and the next epoch, which fences the old owner. Its
// root is e's held root, the newest its placement sets confirmed in full:
// a newer root of an async disk may have blocks the old owner alone holds
// (it committed and was cut off, paused or killed before its push was
// done), and that owner collects them once it commits over them, so a
// disk taken at it could not be read (torture seed 21). The writes after
// the held root stay with the old owner, which keeps them in a fenced
// replica when it learns of the take. A disk no push has confirmed yet is
// taken at its root. The error matches volume.ErrNotFound when the catalog has no
// live entry for disk, volume.ErrInvalid when this node owns it already,
// and ErrConflict when its owner is alive and force is not set.
//
// The driver holds its reconcile lock across the Put of this entry and the
// adopt of the disk, so that no pass sees the disk owned and written by
// this node but not held here, which Decide takes for a removal.
func DecideTake(disk string, e catalog.Entry, found bool, self meshnet.PeerID, ownerAlive, force bool) (catalog.Entry, error) {
	switch {
	case !found || e.Deleted:
		return catalog.Entry{}, fmt.Errorf("take: disk %q: %w", disk, volume.ErrNotFound)
	case e.Owner == self.String():
		return catalog.Entry{}, fmt.Errorf("take: disk %q is already owned by this node: %w", disk, volume.ErrInvalid)
	case ownerAlive && !force:
		return catalog.Entry{}, errkind.Errorf(ErrConflict, "take: the owner of disk %q, %s, is alive: use weft disk move on it, or --force", disk, e.Owner)
	}
	e.Owner, e.Epoch = self.String(), e.Epoch+1
	if e.Held.Defined() {
		e.Root = e.Held
	}
	return e, nil
}
