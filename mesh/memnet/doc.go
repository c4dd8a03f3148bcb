// Package memnet is an in-memory network of named peers for tests and
// simulations: many nodes in one process, connected by buffered pipes,
// with partitions (Cut) and dead nodes (Down) to inject failures.
//
// Streams are reliable and ordered, like libp2p streams. A stream is
// broken (both ends fail with ErrLinkDown) when the link it runs over is
// cut or either peer goes down; closing one end is seen by the other end
// as end of stream once it has read what was sent.
//
// There are two ways to be on the network. Listen and Dialer serve and
// open bare streams between peers named by strings, for the block
// exchange alone. Join makes a Node, a whole member that satisfies
// meshnet.Network, so that cluster nodes run many to a process with no
// sockets; its name for Cut, Down and Up is string(id).
//
// A Node's streams start with a header (uvarint length, at most 256, then
// the protocol name) read by the node's one listener, which runs the
// handler of that protocol; Open refuses a protocol the target does not
// handle before any stream exists, as libp2p's negotiation does. Reset
// (meshnet.Abort) breaks a stream: both ends fail with ErrReset.
//
// Membership is an oracle, with no suspicion delay: from X, member Y is
// Left once Y's Node is closed, Dead while Y or X is down or X–Y is cut,
// else Alive. Every Join, Down, Up, Cut, Heal and Close wakes every Node's
// membership callbacks (coalesced, on the node's one notify goroutine,
// which also delivers broadcasts in order). Broadcast reaches the other
// members alive in the sender's view. Push-pull (each pair alive to each
// other exchanging LocalState into MergeRemoteState) runs on Join, Heal
// and Up before they return, and every SetPushPull period.
package memnet
