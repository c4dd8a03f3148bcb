// Package blockstore is weft's durable local store of content-addressed
// blocks.
//
// A block is named by its CID: CIDv1, codec raw (disk data) or dag-cbor
// (block-map nodes), multihash BLAKE3-256. The CID is the checksum: every
// read verifies the bytes and returns ErrCorrupt instead of serving bad data,
// except Disk.GetToSend, which reads blocks for peers that verify them on
// arrival and skips the hash for records its process hashed already.
//
// Stores are built from one-method roles (Getter, Putter, Haser, Deleter,
// Lister, Sweeper) so that consumers ask only for what they use. Every
// implementation passes the same conformance suite in storetest. Memory is
// the reference; Disk is the durable store.
//
// # Disk layout
//
//	dir/segments/00000001.seg  append-only records: header, CID, bytes
//	dir/index/                 Pebble: CID -> segment, offset, length, GC generation
//	dir/ballast                space held back so the index can always open
//
// A put writes its records, fsyncs the segment, then commits the index
// entries without a sync: an entry never names bytes that are not durable,
// and the put's one flush is the segment's. A crash may lose index entries
// of acknowledged puts; Open reads the segments above a checkpoint and
// indexes every whole record whose bytes hash to its CID that the index
// lacks (recover.go), so after a crash at any point every acknowledged
// block reads back, and a torn record is garbage nobody points to. Each
// Open starts a new segment, so nothing is appended after a torn tail.
// Deleted and superseded records are garbage until Compact (run by Sweep)
// copies the live records out of mostly dead segments and removes them.
//
// Every file goes through Options.FS, the OS's unless a test gives a
// crashable or fault-injecting one (fs.go, internal/powerloss).
//
// Segments rather than Pebble values: with 64 KiB blocks, storing the bytes
// as Pebble values measured 88 MB/s for synced 1 MiB batches against 270
// MB/s for segments (the log and every compaction rewrite the payload), and
// 727 against 947 MB/s for verified reads.
package blockstore
