// Package transfer moves whole roots between the nodes of a mesh on
// request and on a schedule: pushes, pulls, the receiving end of a push,
// the background pull behind a clone of a remote disk, and the replication
// policies that run them every so often. One Service does all of it; the
// daemon's composition root builds it over the cluster layer (Catalog,
// which a *cluster.Cluster satisfies), the volumes (Volumes, a
// *volume.Manager), the block exchange and store (datapath), a
// meshnet.Network and a clock.
//
// # Protocols
//
// Protocol (/weft/transfer/1.0.0) asks a member to receive a root. The
// pusher sends one JSON object (at most 64 KiB): the transfer ID, the ref
// the receiver keeps it under, exactly one catalog entry naming the root
// (catalog.Encode), the peers to fetch from (the pusher first) and, for a
// push to several targets at once, the swarm of all receivers in one
// order. The receiver pulls the blocks, verifying each on arrival, and
// writes one JSON progress line (api.TargetProgress) every 250 ms and a
// last one when it ends. Aborting the stream cancels the receiver's pull
// (meshnet.Abort, so that a cancel is not read as a clean end).
//
// CrowdProtocol (/weft/crowd/1.0.0) makes the origin of a pull the tracker
// of its root: a puller sends {"root": CID}, later {"done": true} once it
// holds the root, and keeps the stream open while it pulls or serves; the
// tracker answers with {"members": [...], "done": [...]} whenever the
// root's pullers change. Pullers of one root at once learn of each other
// and fetch from each other, so the origin's uplink carries about one
// copy. Lines are bounded (64 KiB), as are the pullers of a root (256) and
// the roots tracked (1024); a tracker that does not answer within 3 s
// leaves the pull on its own.
//
// # Durability and resumption
//
// A transferred root counts once it is kept in the volumes: a spacesuit
// version as itself, a replica under its name, a disk head as a replica
// named KIND-YYYYMMDD-HHMMSS (with -2, -3, … for other roots of the same
// second). Until then its root is a partial root (DIR/partial.json, kept
// 7 days): heal and GC keep its blocks here, so that running the
// transfer again resumes from what arrived. The pushes and pulls an
// operator starts are journaled (DIR/transfers.json) until they end, and a
// restarted daemon resumes them under the same ID, retrying for up to 10
// minutes while their peers come back: while one cannot start, and when a
// push fails only because its targets cannot be reached yet.
//
// # Replication policies
//
// A policy lives in the catalog (replicate/DISK/SITE for a push,
// replicate/DISK/SITE/pull for a pull) and is run by the disk's owner or
// by the pulling node, checked every second. Each cycle takes a replica
// named repl-SITE-YYYYMMDD-HHMMSS[-pull], sends it, and prunes the states
// beyond the policy's keep; the push policies of one disk that fall due
// together go out as one swarm. A cycle writes its results back to the
// policy record only if the record still exists: a policy removed while
// its cycle ran stays removed.
package transfer
