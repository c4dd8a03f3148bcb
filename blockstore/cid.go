package blockstore

import (
	"fmt"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
	"github.com/zeebo/blake3"
)

// Codecs used by weft. Data blocks are raw bytes; block-map nodes are CBOR.
const (
	CodecRaw     = cid.Raw     // 0x55: a block of disk data
	CodecDagCBOR = cid.DagCBOR // 0x71: a block-map node
)

// DigestSize is the length of a BLAKE3-256 digest.
const DigestSize = 32

// MaxBlockSize is the largest block a store accepts: the largest disk block
// size (4 MiB) plus room for a map node.
const MaxBlockSize = 4<<20 + 64<<10

// Block is an immutable piece of data named by its CID. Data must not be
// modified after the block is made.
//
// A Block made by NewBlock carries the knowledge that its CID was just
// computed from its Data, and stores skip hashing it again on Put. A Block
// assembled from parts (say, from the network) is verified on Put.
type Block struct {
	CID  cid.Cid
	Data []byte

	hashed bool
}

// Sum returns the CIDv1 of data under codec, with a BLAKE3-256 multihash.
func Sum(codec uint64, data []byte) cid.Cid {
	digest := blake3.Sum256(data)
	return cidOf(codec, digest[:])
}

func cidOf(codec uint64, digest []byte) cid.Cid {
	buf, err := mh.Encode(digest, mh.BLAKE3)
	if err != nil {
		// Encode fails only for an unknown code or a digest longer than the
		// varint allows; neither can happen with a 32-byte BLAKE3 digest.
		panic(fmt.Sprintf("encode blake3 multihash: %v", err))
	}
	return cid.NewCidV1(codec, buf)
}

// NewBlock hashes data and returns it as a block of the given codec.
func NewBlock(codec uint64, data []byte) Block {
	return Block{CID: Sum(codec, data), Data: data, hashed: true}
}

// verify checks b before it is stored: its CID must be one weft stores and,
// unless NewBlock just computed it, must match the data.
func (b Block) verify() error {
	if b.hashed {
		return CheckCID(b.CID)
	}
	return Verify(b.CID, b.Data)
}

// CheckCID reports whether c is a CID weft stores: CIDv1, raw or dag-cbor,
// BLAKE3-256. Anything else is refused before it reaches the disk.
func CheckCID(c cid.Cid) error {
	if !c.Defined() {
		return fmt.Errorf("cid: undefined")
	}
	if c.Version() != 1 {
		return fmt.Errorf("cid %s: version %d, want 1", c, c.Version())
	}
	if codec := c.Type(); codec != CodecRaw && codec != CodecDagCBOR {
		return fmt.Errorf("cid %s: codec %#x, want raw or dag-cbor", c, codec)
	}
	dec, err := mh.Decode(c.Hash())
	if err != nil {
		return fmt.Errorf("cid %s: %w", c, err)
	}
	if dec.Code != mh.BLAKE3 || dec.Length != DigestSize {
		return fmt.Errorf("cid %s: multihash %#x/%d, want blake3-256", c, dec.Code, dec.Length)
	}
	return nil
}

// Verify returns nil if data hashes to c and ErrCorrupt (wrapped) if not.
func Verify(c cid.Cid, data []byte) error {
	if err := CheckCID(c); err != nil {
		return err
	}
	if got := Sum(c.Type(), data); !got.Equals(c) {
		return fmt.Errorf("block %s: content hashes to %s: %w", c, got, ErrCorrupt)
	}
	return nil
}
