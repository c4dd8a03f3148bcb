// Package blockstore is weft's durable local store of content-addressed
// blocks.
//
// A block is named by its CID: CIDv1, codec raw (disk data) or dag-cbor
// (block-map nodes), multihash BLAKE3-256. The CID is the checksum: every
// read verifies the bytes and returns ErrCorrupt instead of serving bad data.
//
// Stores are built from one-method roles (Getter, Putter, Haser, Deleter,
// Lister, Sweeper) so that consumers ask only for what they use. Every
// implementation passes the same conformance suite in storetest.
package blockstore
