// Package catalog is the replicated catalog of roots: every disk, replica
// and spacesuit of the mesh as a name bound to a root CID plus metadata,
// and every scheduled replication policy with the last root it replicated.
//
// Every node holds a whole copy. Copies are exchanged by gossip (full-state
// push-pull and small broadcasts of changed entries) and merged in whatever
// order, grouping and number of times messages arrive; they converge because
// Merge keeps, for each key, the newest version by a total order every node
// computes alike (a last-writer-wins map):
//
//  1. the higher ownership Epoch: a handover or a takeover of a dead owner
//     raises it, so anything the old owner writes afterwards loses (fencing);
//  2. then the higher Version, a Lamport clock: a node writes with one more
//     than the largest version it has seen, so its write beats every version
//     it knew of;
//  3. then the larger Writer, then the larger Root bytes, and finally the
//     remaining fields, so that even two versions a confused writer gave
//     the same number resolve the same way everywhere.
//
// Deletion writes a tombstone (Deleted set) that is merged like any other
// version, so a delete cannot be undone by an old copy arriving late.
// Tombstones are kept forever for now; pruning them needs to know that every
// member has seen them.
//
// # Keys
//
//	disk/NAME               a disk: its head's root, owner and metadata
//	replica/DISK/NAME       a replica (snapshot) of a disk
//	spacesuit/NAME@N        version N of a spacesuit
//	replicate/DISK/SITE     a policy: the disk's owner pushes it to SITE
//	replicate/DISK/SITE/pull  a policy: a node of SITE pulls the disk
//
// where NAME, DISK and SITE match [A-Za-z0-9._-]{1,128} but are not "." or
// ".." (names become file names elsewhere) and N is a version number in
// decimal without leading zeros. A policy's root is the last root it
// replicated; a policy key without /pull written before pull policies had
// keys of their own may hold a pull policy (its settings say which). Only a
// disk (nothing written yet), a policy (nothing replicated yet) or a
// tombstone may lack a root.
//
// # Encoding
//
// A catalog or a batch of entries is a CBOR array of entries in RFC 8949
// core deterministic encoding. An entry is a map with small integer keys;
// fields holding their zero value are omitted:
//
//	1 key (text)       5 version (uint)    9  block size (int)  13 modified          17 initiators (array of text)
//	2 root (CID bytes) 6 writer (text)     10 replicas (int)    14 policy (bytes)     18 chap (bool)
//	3 owner (text)     7 deleted (bool)    11 sync (bool)       15 held (CID bytes)   19 origin (text)
//	4 epoch (uint)     8 size (int)        12 created           16 allow (array of text) 20 creator (text)
//
// Times are Unix nanoseconds (int), absent for the zero time. The policy is
// opaque to the catalog (JSON the node running the policy owns), at most
// MaxPolicy bytes. Fields 16 to 18 are a disk's access rules, which travel
// with it to a new owner: its allow-list of client networks and its iSCSI
// initiator names, each at most accesslist.MaxEntries long and in
// accesslist's canonical form (sorted, unique, networks masked, names in
// lower case), and whether its iSCSI logins need CHAP (the secrets are
// never in the catalog). Fields 19 and 20 travel the same way: the ref a
// disk was cloned from (NAME or NAME@NAME) and the client that made it (a
// name of at most MaxCreatorLen characters). Only disk records carry
// fields 16 to 20. A node of a version before these fields refuses a
// record that has them (unknown field). Decode accepts exactly what Encode
// produces: it refuses unknown fields, non-canonical encodings, trailing
// bytes and invalid entries.
package catalog
