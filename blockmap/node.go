package blockmap

import (
	"bytes"
	"fmt"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/internal/strictcbor"
)

// Fanout is the number of slots in a node.
const Fanout = 256

// MaxLevels bounds the height of a tree: 2^64 blocks need 8 levels.
const MaxLevels = 8

// maxNodeSize bounds an encoded node: Fanout entries of a few bytes of CBOR
// framing plus a CID of at most 64 bytes. Larger input is refused unread.
const maxNodeSize = 16 + Fanout*(8+64)

// Node is one decoded node of a block map.
type Node struct {
	Level   uint8
	Entries []Entry // strictly ascending by Slot, never empty
}

// Entry is one occupied slot of a node.
type Entry struct {
	Slot uint8
	CID  cid.Cid
}

// wireNode and wireEntry are the CBOR shapes of Node and Entry.
type wireNode struct {
	_       struct{} `cbor:",toarray"`
	Level   uint8
	Entries []wireEntry
}

type wireEntry struct {
	_    struct{} `cbor:",toarray"`
	Slot uint8
	CID  []byte
}

var (
	encMode = strictcbor.EncMode()
	decMode = strictcbor.DecMode(Fanout, 16)
)

// Encode returns the deterministic encoding of n after checking it.
func Encode(n *Node) ([]byte, error) {
	if err := n.validate(); err != nil {
		return nil, err
	}
	w := wireNode{Level: n.Level, Entries: make([]wireEntry, len(n.Entries))}
	for i, e := range n.Entries {
		w.Entries[i] = wireEntry{Slot: e.Slot, CID: e.CID.Bytes()}
	}
	return encMode.Marshal(w)
}

// Decode parses an encoded node. It accepts exactly what Encode produces:
// any other input, including a non-canonical encoding of a valid node,
// returns an error. It never panics.
func Decode(data []byte) (*Node, error) {
	if len(data) > maxNodeSize {
		return nil, fmt.Errorf("map node: %d bytes exceeds %d", len(data), maxNodeSize)
	}
	var w wireNode
	if err := decMode.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("map node: %w", err)
	}
	n := &Node{Level: w.Level, Entries: make([]Entry, len(w.Entries))}
	for i, e := range w.Entries {
		c, err := cid.Cast(e.CID)
		if err != nil {
			return nil, fmt.Errorf("map node: entry %d: %w", i, err)
		}
		n.Entries[i] = Entry{Slot: e.Slot, CID: c}
	}
	if err := n.validate(); err != nil {
		return nil, err
	}
	// Only the canonical form is accepted, so that a node's CID is a
	// function of its meaning and not of how some peer chose to encode it.
	canon, err := encMode.Marshal(w)
	if err != nil || !bytes.Equal(canon, data) {
		return nil, fmt.Errorf("map node: not in canonical encoding")
	}
	return n, nil
}

func (n *Node) validate() error {
	if n.Level >= MaxLevels {
		return fmt.Errorf("map node: level %d, max %d", n.Level, MaxLevels-1)
	}
	if len(n.Entries) == 0 {
		return fmt.Errorf("map node: no entries")
	}
	want := uint64(blockstore.CodecRaw)
	if n.Level > 0 {
		want = blockstore.CodecDagCBOR
	}
	for i, e := range n.Entries {
		if i > 0 && e.Slot <= n.Entries[i-1].Slot {
			return fmt.Errorf("map node: slot %d after %d: not ascending", e.Slot, n.Entries[i-1].Slot)
		}
		if err := blockstore.CheckCID(e.CID); err != nil {
			return fmt.Errorf("map node: slot %d: %w", e.Slot, err)
		}
		if e.CID.Type() != want {
			return fmt.Errorf("map node: level %d slot %d: codec %#x, want %#x", n.Level, e.Slot, e.CID.Type(), want)
		}
	}
	return nil
}
