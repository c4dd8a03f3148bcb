// Package heal keeps every block reachable from the mesh's catalog on the R
// nodes of its placement set.
//
// Each node heals its own share. A pass walks every root of the catalog,
// asks the other members of each block's placement set which blocks they
// hold (of the blocks of other nodes' shares only to count their copies),
// fetches the blocks it should hold and lacks (from any node that has
// them), and drops the copies it holds but no longer should, only once
// every member of the placement set has confirmed its copy. The pass
// is recomputed from what is stored, so an interrupted heal resumes where
// it stopped. Copies are throttled by a byte rate and a concurrency bound
// so heal never starves client I/O or the failure detector; a node without
// room for one more response (Config.Room) stops fetching, and its blocks
// stay under-replicated until space comes back.
//
// The package also holds the two other ways blocks move for durability:
// the owner's push of freshly committed blocks to their placement set
// (Pusher) and the fetch of a missing or corrupt block on read
// (FetchingStore); and the node's one account of how many confirmed copies
// each block has (Redundancy), which the pushes' acknowledgements and the
// passes' who-has answers feed and every report of under-replicated
// blocks reads.
package heal
