// Package cluster is a node's mesh half: it keeps the replicated catalog
// (mesh/catalog) and the node's own volumes in agreement, over any network
// that implements mesh/meshnet, with time from internal/clock.
//
// The layer has four jobs:
//
//   - Ownership. Every disk has one owner, the one node where its head
//     changes; the catalog names it with an ownership epoch. A move hands a
//     disk to a live member and a take claims the disk of a dead (or, with
//     force, unreachable) one; both raise the epoch, which fences the old
//     owner: its later writes lose in every merge, and when it sees the new
//     epoch it gives its head up, keeping writes the new owner lacks in a
//     replica named fenced-e<epoch>-<node>-<time>.
//   - Publishing. What the volumes hold (disk heads, replicas, spacesuit
//     versions) becomes catalog entries and is broadcast; what was removed
//     here becomes tombstones; what the mesh removed elsewhere is removed
//     here too; a disk handed to this node is adopted. A targeted publish
//     decides for a few keys only, without a whole pass.
//   - Open a ref. A disk, replica or spacesuit version opens from the local
//     volumes when they hold it, else from its catalog root, whose blocks
//     come from the mesh.
//   - Sync flush. A flush of a sync disk returns only once its root is
//     pushed to the disk's placement set and every holder knows the root,
//     so a takeover after the owner's death starts from it.
//
// Files, one concept each: cluster.go (Config, New, Attach, membership),
// gossip.go (the catalog on the network's gossip), catalogpush.go (the
// /weft/catalog/1.0.0 push and acknowledgement), catalogget.go (the
// /weft/catalog-get/1.0.0 question a take asks first), decide.go (the pure
// decisions), reconcile.go (Run and the driver that applies a decision:
// adopt, give up, forget, publish, tombstone, replicate), publish.go
// (PutRecord, Publish, Announce, Remove), ownership.go (CheckOwner, Move,
// Take), syncflush.go, replicate.go (asynchronous pushes of new roots),
// open.go (Open, Entry, AwaitEntry, Missing, Unavailable), info.go (what
// the catalog says of disks and replicas this node does not hold) and
// roots.go (the roots heal and GC keep).
//
// decide.go is the pure part, in the manner of etcd's raft: Decide,
// DecideKeys, DecideMove and DecideTake take a View of the catalog and the
// volumes and return actions or entries, with no I/O, no clock and no lock.
// A driver takes its lock, builds the View, decides and applies the actions
// (volume changes, catalog writes, broadcasts, pushes), so that every
// fencing and handover case is a row of a table test.
package cluster
