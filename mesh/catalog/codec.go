package catalog

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/internal/accesslist"
	"github.com/weft-mesh/weft/internal/strictcbor"
)

// Wire limits: a catalog arriving from the network or from disk larger than
// this is refused unread.
const (
	MaxEncodedSize = 16 << 20
	MaxEntries     = 1 << 20
)

// wireEntry is the CBOR shape of an Entry; see the package documentation.
type wireEntry struct {
	Key       string `cbor:"1,keyasint"`
	Root      []byte `cbor:"2,keyasint,omitempty"`
	Owner     string `cbor:"3,keyasint"`
	Epoch     uint64 `cbor:"4,keyasint,omitempty"`
	Version   uint64 `cbor:"5,keyasint"`
	Writer    string `cbor:"6,keyasint"`
	Deleted   bool   `cbor:"7,keyasint,omitempty"`
	Size      int64  `cbor:"8,keyasint,omitempty"`
	BlockSize int64  `cbor:"9,keyasint,omitempty"`
	Replicas  int64  `cbor:"10,keyasint,omitempty"`
	Sync      bool   `cbor:"11,keyasint,omitempty"`
	Created   *int64 `cbor:"12,keyasint,omitempty"` // Unix ns; nil for the zero time
	Modified  *int64 `cbor:"13,keyasint,omitempty"`
	Policy    []byte `cbor:"14,keyasint,omitempty"`
	Held      []byte `cbor:"15,keyasint,omitempty"`
	// 16 to 18: a disk's access rules (Entry.Allow, Initiators, CHAP).
	Allow      []string `cbor:"16,keyasint,omitempty"`
	Initiators []string `cbor:"17,keyasint,omitempty"`
	CHAP       bool     `cbor:"18,keyasint,omitempty"`
	// 19 and 20: what a disk was cloned from and who made it (Entry.Origin,
	// Creator).
	Origin  string `cbor:"19,keyasint,omitempty"`
	Creator string `cbor:"20,keyasint,omitempty"`
}

// wireFields is the number of fields of a wireEntry: the most pairs an
// entry's map may have.
const wireFields = 20

var (
	encMode = strictcbor.EncMode()
	// An entry is a map whose only nesting is its two access lists.
	decMode = strictcbor.DecMode(accesslist.MaxEntries, wireFields)
)

// Encode returns the deterministic encoding of es, in the given order. It
// fails with ErrInvalid if an entry breaks the catalog's rules, so that
// nothing Decode would refuse is ever sent.
func Encode(es []Entry) ([]byte, error) {
	if len(es) > MaxEntries {
		return nil, fmt.Errorf("encode catalog: %d entries, max %d: %w", len(es), MaxEntries, ErrInvalid)
	}
	b := arrayHeader(uint64(len(es)))
	for _, e := range es {
		e = e.normalized()
		if err := e.validate(); err != nil {
			return nil, fmt.Errorf("encode catalog: %w", err)
		}
		eb, err := encMode.Marshal(toWire(e))
		if err != nil {
			return nil, fmt.Errorf("encode catalog: %s: %w", e.Key, err)
		}
		b = append(b, eb...)
		if len(b) > MaxEncodedSize {
			return nil, fmt.Errorf("encode catalog: more than %d bytes: %w", MaxEncodedSize, ErrInvalid)
		}
	}
	return b, nil
}

// Decode parses entries encoded by Encode. It is meant for outside input:
// it accepts exactly what Encode produces and returns an error for anything
// else (oversized, malformed, non-canonical or invalid entries); it never
// panics. It decodes and checks one entry at a time, so that memory grows
// with the valid entries read, not with what the input claims.
func Decode(b []byte) ([]Entry, error) {
	if len(b) > MaxEncodedSize {
		return nil, fmt.Errorf("decode catalog: %d bytes, max %d", len(b), MaxEncodedSize)
	}
	n, rest, err := readArrayHeader(b)
	if err != nil {
		return nil, fmt.Errorf("decode catalog: %w", err)
	}
	var es []Entry
	for i := range n {
		var w wireEntry
		next, err := decMode.UnmarshalFirst(rest, &w)
		if err != nil {
			return nil, fmt.Errorf("decode catalog: entry %d: %w", i, err)
		}
		e, err := fromWire(w)
		if err == nil {
			err = e.validate()
		}
		if err != nil {
			return nil, fmt.Errorf("decode catalog: entry %d: %w", i, err)
		}
		// Only the canonical form is accepted, so that equal catalogs
		// have equal encodings and a re-encoded message is the message.
		canon, err := encMode.Marshal(w)
		if err != nil || !bytes.Equal(canon, rest[:len(rest)-len(next)]) {
			return nil, fmt.Errorf("decode catalog: entry %d: not in canonical encoding", i)
		}
		es = append(es, e)
		rest = next
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("decode catalog: %d bytes after the last entry", len(rest))
	}
	return es, nil
}

// arrayHeader returns the canonical CBOR header of an array of n items.
func arrayHeader(n uint64) []byte {
	const array = 4 << 5
	switch {
	case n < 24:
		return []byte{array | byte(n)}
	case n <= math.MaxUint8:
		return []byte{array | 24, byte(n)}
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16([]byte{array | 25}, uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32([]byte{array | 26}, uint32(n))
	default:
		return binary.BigEndian.AppendUint64([]byte{array | 27}, n)
	}
}

// readArrayHeader reads the canonical header of a definite-length array of
// at most MaxEntries items and returns the item count and the bytes after it.
func readArrayHeader(b []byte) (uint64, []byte, error) {
	if len(b) == 0 {
		return 0, nil, fmt.Errorf("empty input")
	}
	if b[0]>>5 != 4 {
		return 0, nil, fmt.Errorf("not an array")
	}
	var n uint64
	var size int // bytes of the header
	switch info := b[0] & 0x1f; {
	case info < 24:
		n, size = uint64(info), 1
	case info <= 27:
		size = 1 + 1<<(info-24)
		if len(b) < size {
			return 0, nil, fmt.Errorf("truncated array header")
		}
		for _, c := range b[1:size] {
			n = n<<8 | uint64(c)
		}
	default:
		return 0, nil, fmt.Errorf("not a definite-length array")
	}
	if !bytes.Equal(b[:size], arrayHeader(n)) {
		return 0, nil, fmt.Errorf("array header not in canonical encoding")
	}
	if n > MaxEntries {
		return 0, nil, fmt.Errorf("%d entries, max %d", n, MaxEntries)
	}
	return n, b[size:], nil
}

func toWire(e Entry) wireEntry {
	w := wireEntry{
		Key:       e.Key,
		Owner:     e.Owner,
		Epoch:     e.Epoch,
		Version:   e.Version,
		Writer:    e.Writer,
		Deleted:   e.Deleted,
		Size:      e.Size,
		BlockSize: e.BlockSize,
		Replicas:  int64(e.Replicas),
		Sync:      e.Sync,
		Created:   toUnixNano(e.Created),
		Modified:  toUnixNano(e.Modified),
		Policy:    e.Policy,

		Allow:      e.Allow,
		Initiators: e.Initiators,
		CHAP:       e.CHAP,
		Origin:     e.Origin,
		Creator:    e.Creator,
	}
	if e.Root.Defined() {
		w.Root = e.Root.Bytes()
	}
	if e.Held.Defined() {
		w.Held = e.Held.Bytes()
	}
	return w
}

func fromWire(w wireEntry) (Entry, error) {
	e := Entry{
		Key:       w.Key,
		Owner:     w.Owner,
		Epoch:     w.Epoch,
		Version:   w.Version,
		Writer:    w.Writer,
		Deleted:   w.Deleted,
		Size:      w.Size,
		BlockSize: w.BlockSize,
		Replicas:  int(w.Replicas),
		Sync:      w.Sync,
		Created:   fromUnixNano(w.Created),
		Modified:  fromUnixNano(w.Modified),
		Policy:    w.Policy,

		Allow:      w.Allow,
		Initiators: w.Initiators,
		CHAP:       w.CHAP,
		Origin:     w.Origin,
		Creator:    w.Creator,
	}
	if len(w.Policy) > MaxPolicy {
		return Entry{}, fmt.Errorf("policy of %d bytes, max %d: %w", len(w.Policy), MaxPolicy, ErrInvalid)
	}
	if int64(e.Replicas) != w.Replicas {
		return Entry{}, fmt.Errorf("replicas %d out of range: %w", w.Replicas, ErrInvalid)
	}
	var err error
	if e.Root, err = castCID("root", w.Root); err != nil {
		return Entry{}, err
	}
	if e.Held, err = castCID("held root", w.Held); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// castCID decodes the CID b of a wire entry's field name; nil is cid.Undef.
func castCID(name string, b []byte) (cid.Cid, error) {
	if len(b) > maxCIDLen {
		return cid.Undef, fmt.Errorf("%s CID of %d bytes, max %d: %w", name, len(b), maxCIDLen, ErrInvalid)
	}
	if b == nil {
		return cid.Undef, nil
	}
	c, err := cid.Cast(b)
	if err != nil {
		return cid.Undef, fmt.Errorf("%s: %v: %w", name, err, ErrInvalid)
	}
	return c, nil
}

func toUnixNano(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	ns := t.UnixNano()
	return &ns
}

func fromUnixNano(ns *int64) time.Time {
	if ns == nil {
		return time.Time{}
	}
	return time.Unix(0, *ns).UTC()
}
