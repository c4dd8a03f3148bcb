// Package volume owns a node's disks: their heads (the writable state on
// the owner), replicas, clones, time travel, commits and garbage
// collection.
//
// # Heads and the write path
//
// A head is a committed block map (a root CID, see package blockmap) plus
// an overlay: a sparse file as large as the disk and a bitmap of the blocks
// written since the last commit. A write lands in the overlay; a partial
// write to a block not yet there first copies the committed block in
// (read-modify-write, once per block). Flush syncs the overlay data, then
// the changed pages of the bitmap: a bit is never durable before the data
// it vouches for.
//
// A commit takes the dirty set, hashes those blocks on every core, stores
// them (zero blocks are dropped from the map, never stored), writes the new
// map path and records the new root in the catalog. Writes may continue
// meanwhile: a block written during a commit stays dirty for the next. Only
// after the root is durable are the committed bits cleared, persisted, and
// their overlay space punched out, so a crash at any point leaves either
// the old root with the overlay intact or the new root. A commit first
// syncs the overlay, so that a bit whose clearing fails (or is cut short)
// vouches for bytes equal to the new root's. The punch comes one
// commit late (or once the head is quiet): a block rewritten before the
// next commit lands on space the file system still has allocated and
// cached, instead of a hole it just discarded.
//
// # Replicas, clones, time travel
//
// A replica is a name and a time for a root CID; a clone is a new head
// starting at a root. Both are O(1): nothing is copied, because blocks are
// immutable and shared. There is no chain: a replica depends on no disk
// and no other replica, and outlives the disk it was taken of. Restore
// moves a head to a replica's root, first saving the head as a replica if
// no replica holds it.
//
// # Garbage collection
//
// Blocks live as long as a live root reaches them: disk heads, replicas,
// and roots pinned by open views. GC starts a new block-store generation
// and snapshots the roots while holding gcMu for writing; every commit
// holds gcMu for reading from its first put until its root is in the
// catalog. The store never sweeps blocks put (or put again) after the
// generation began, so a block a commit relies on is either reachable from
// the snapshot or too new to sweep.
//
// # The catalog
//
// Disks and replicas are recorded in one JSON file, rewritten whole and
// atomically (temporary file, fsync, rename, fsync of the directory) on
// every change. A save that fails may still have renamed the file into
// place, so GC keeps that catalog's roots too until a save succeeds.
//
// The catalog and the overlays go through Config.FS, the OS's unless a
// test gives a crashable or fault-injecting one (fs.go).
package volume
