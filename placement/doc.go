// Package placement decides which nodes hold a block for durability.
//
// The placement set of a block is a pure function of the block's key and the
// membership view: no owner, no clock, no I/O. Every node that sees the same
// members therefore computes the same set, and heal can compare the set it
// computes before and after a membership change to learn what must move.
//
// # Rule
//
// Distance is Kademlia's: the XOR of sha256(key) and sha256(peer ID bytes),
// read as a big-endian number, exactly as libp2p's kbucket converts keys and
// peer IDs. Walking members from the closest, Place first takes the closest
// member of each site not yet used, until it has r members or every site is
// used, and then fills up with the closest remaining members whatever their
// site. So r copies land on min(r, sites) distinct sites, and a join or a
// leave moves only the keys whose set the joining or leaving member enters or
// leaves: about r/n of them.
package placement
