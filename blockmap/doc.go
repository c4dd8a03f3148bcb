// Package blockmap stores a disk's block map: the sparse mapping from block
// index to the CID of the block's data, as a copy-on-write radix tree of
// CBOR nodes that are themselves content-addressed blocks.
//
// # Format
//
// Every node has Fanout (256) slots. A node at level 0 is a leaf: its links
// are data blocks (codec raw). A node at level L > 0 links to nodes at level
// L-1 (codec dag-cbor). Block index i sits in slot (i >> (8*L)) & 0xff at
// level L. A map for n blocks has Levels(n) levels, so its root is at level
// Levels(n)-1 and the tree has the same shape whatever the content.
//
// A node is the deterministic CBOR encoding (RFC 8949 core deterministic)
// of the array [level, [[slot, cid-bytes], ...]] with slots strictly
// ascending. Missing slots are zeros (or all-zero subtrees). A node with no
// entries is never stored: an empty subtree is simply absent, and the root
// of an empty map is cid.Undef. Hence the same content always gives the same
// root CID, and changing one block rewrites only the path to it.
package blockmap
