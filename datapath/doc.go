// Package datapath pulls one root's blocks from a set of peers into the
// local store: the transfer protocol of weft (ARCHITECTURE.md, "Transfers").
//
// A transfer first walks the block map from its root, level by level,
// fetching the map nodes missing here, and checks every data block (leaf)
// against the local store: what is already held is skipped, so pulling
// version N+1 onto a node holding N moves only the changed blocks. A map
// node being present says nothing about its subtree, since other code keeps
// map nodes everywhere, so the leaves are always checked.
//
// The missing blocks are then fetched in batches of about Spec.BlockSize
// bytes, Spec.Concurrency batches in flight. Each transfer starts at its
// own offset in the missing list (a hash of its ID), and for every batch it
// asks the sources other than the first which of the batch's blocks they
// hold and fetches those from them before falling back to the first source
// (the origin). A peer that sends a bad block is dropped from the
// transfer; a peer that fails a request is passed over for a while.
//
// The receivers of a push pull as one swarm (Spec.Swarm, swarm.go): each
// block has one owner among them, the same for all (they take the blocks in turn),
// which fetches it from the origin; the others fetch it from the owner as
// soon as it holds it. The origin sends about one copy in all however
// many receivers there are, and their uplinks carry the rest. The share of
// a member that fails requests goes to the others; that of a member that
// sends nothing for a few seconds is taken from the origin by whoever is
// idle, so a dead receiver does not stall the others.
//
// Receivers that pull one root from one origin at once, each on its own,
// pull as a crowd (Spec.Crowd, crowd.go): a swarm whose members come and
// go, as the origin, their tracker, tells them. Each block's owner is the
// member that ranks it highest (rendezvous hashing), so a member that
// joins or leaves moves only its own share, and one that joins late asks
// the earlier owner of its share for what that one holds already.
//
// Every request is charged twice before it goes out (a swarm's ask of a
// member, which may bring nothing yet, once it is back): to the
// transfer's own token bucket (Spec.BWLimit) and to the node's Scheduler,
// which admits the requests of all transfers in weighted-fair order by
// priority within the node's link budget.
//
// A transfer that was cancelled or failed resumes when started again with
// the same Spec: what arrived is skipped by the walk.
package datapath
