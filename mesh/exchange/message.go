package exchange

import (
	"bytes"
	"fmt"

	"github.com/fxamacker/cbor/v2"
	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/internal/strictcbor"
)

// op is what a request asks for. The values are part of the wire format.
type op uint8

const (
	opHas op = 1
	opGet op = 2
	opPut op = 3
)

func (o op) String() string {
	switch o {
	case opHas:
		return "has"
	case opGet:
		return "get"
	case opPut:
		return "put"
	default:
		return fmt.Sprintf("op(%d)", uint8(o))
	}
}

// request is a decoded, validated request.
type request struct {
	op     op
	cids   []cid.Cid          // has, get
	blocks []blockstore.Block // put; not yet verified against their CIDs
}

// response is a decoded response. Only its shape is validated here; whether
// it fits the request is the client's check.
type response struct {
	code    code
	message string             // errors
	has     []bool             // has
	blocks  []blockstore.Block // get; not yet verified against their CIDs
	next    int                // get: how many requested CIDs this answers
}

// wireRequest and wireResponse are the CBOR shapes. Integer keys keep
// frames small; decMode refuses keys it does not know.
type wireRequest struct {
	Op     op          `cbor:"1,keyasint"`
	CIDs   [][]byte    `cbor:"2,keyasint,omitempty"`
	Blocks []wireBlock `cbor:"3,keyasint,omitempty"`
}

type wireResponse struct {
	Code    code        `cbor:"1,keyasint,omitempty"`
	Message string      `cbor:"2,keyasint,omitempty"`
	Has     []bool      `cbor:"3,keyasint,omitempty"`
	Blocks  []wireBlock `cbor:"4,keyasint,omitempty"`
	Next    int         `cbor:"5,keyasint,omitempty"`
}

type wireBlock struct {
	_    struct{} `cbor:",toarray"`
	CID  []byte
	Data frameBytes
}

// frameBytes is a CBOR byte string decoded without a copy: it shares the
// frame it was read from, which the caller must keep unchanged for as
// long as the decoded message is in use. Block payloads are almost all of
// a frame's bytes, so copying them out cost a clear and a copy of each.
type frameBytes []byte

// UnmarshalCBOR takes the payload of the byte string in data, which the
// decoder has checked to be one well-formed, definite-length item. Null is
// an empty block, as the encoder writes a nil slice.
func (b *frameBytes) UnmarshalCBOR(data []byte) error {
	if len(data) == 1 && data[0] == 0xf6 {
		*b = nil
		return nil
	}
	if len(data) == 0 || data[0]>>5 != 2 {
		return fmt.Errorf("block data is not a byte string")
	}
	var n uint64
	head := 1
	switch info := data[0] & 0x1f; {
	case info < 24:
		n = uint64(info)
	case info <= 27:
		size := 1 << (info - 24)
		if len(data) < 1+size {
			return fmt.Errorf("block data: short length")
		}
		for _, c := range data[1 : 1+size] {
			n = n<<8 | uint64(c)
		}
		head += size
	default:
		return fmt.Errorf("block data: not a definite length")
	}
	if n != uint64(len(data)-head) {
		return fmt.Errorf("block data: %d bytes announced, %d present", n, len(data)-head)
	}
	// The full slice expression keeps an append from writing over the
	// next item of the frame.
	*b = frameBytes(data[head:len(data):len(data)])
	return nil
}

var (
	encMode = mustEncMode()
	decMode = strictcbor.DecMode(MaxCIDs, 16)
)

// mustEncMode encodes straight into the caller's buffer: the default
// encoder stages a message in a buffer of its own and then copies it.
func mustEncMode() cbor.UserBufferEncMode {
	em, err := cbor.CoreDetEncOptions().UserBufferEncMode()
	if err != nil {
		panic(fmt.Sprintf("cbor encode mode: %v", err))
	}
	return em
}

// encodeRequest appends the CBOR of r to buf.
func encodeRequest(buf *bytes.Buffer, r request) error {
	w := wireRequest{Op: r.op, CIDs: cidBytes(r.cids), Blocks: toWireBlocks(r.blocks)}
	buf.Grow(encodedSize(r.cids, r.blocks))
	if err := encMode.MarshalToBuffer(w, buf); err != nil {
		return fmt.Errorf("encode %s request: %w", r.op, err)
	}
	return nil
}

// decodeRequest decodes and validates a request body from an untrusted peer.
func decodeRequest(body []byte) (request, error) {
	var w wireRequest
	if err := decMode.Unmarshal(body, &w); err != nil {
		return request{}, fmt.Errorf("decode request: %w", err)
	}
	r := request{op: w.Op}
	var err error
	switch w.Op {
	case opHas, opGet:
		if len(w.Blocks) != 0 {
			return request{}, fmt.Errorf("%s request carries blocks", w.Op)
		}
		if len(w.CIDs) == 0 {
			return request{}, fmt.Errorf("%s request names no CIDs", w.Op)
		}
		if r.cids, err = parseCIDs(w.CIDs); err != nil {
			return request{}, fmt.Errorf("%s request: %w", w.Op, err)
		}
	case opPut:
		if len(w.CIDs) != 0 {
			return request{}, fmt.Errorf("put request carries bare CIDs")
		}
		if len(w.Blocks) == 0 {
			return request{}, fmt.Errorf("put request carries no blocks")
		}
		if r.blocks, err = parseBlocks(w.Blocks, MaxPutPayload); err != nil {
			return request{}, fmt.Errorf("put request: %w", err)
		}
	default:
		return request{}, fmt.Errorf("unknown %s", w.Op)
	}
	return r, nil
}

// encodeResponse appends the CBOR of r to buf.
func encodeResponse(buf *bytes.Buffer, r response) error {
	w := wireResponse{
		Code:    r.code,
		Message: r.message,
		Has:     r.has,
		Blocks:  toWireBlocks(r.blocks),
		Next:    r.next,
	}
	buf.Grow(len(r.message) + len(r.has) + encodedSize(nil, r.blocks))
	if err := encMode.MarshalToBuffer(w, buf); err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	return nil
}

// decodeResponse decodes a response body from an untrusted peer and checks
// its shape and bounds.
func decodeResponse(body []byte) (response, error) {
	var w wireResponse
	if err := decMode.Unmarshal(body, &w); err != nil {
		return response{}, fmt.Errorf("decode response: %w", err)
	}
	if w.Code >= codeLimit {
		return response{}, fmt.Errorf("response: unknown code %d", w.Code)
	}
	if len(w.Message) > maxMessageLen {
		return response{}, fmt.Errorf("response: message of %d bytes exceeds %d", len(w.Message), maxMessageLen)
	}
	r := response{code: w.Code, message: w.Message, has: w.Has, next: w.Next}
	if w.Code != codeOK {
		if len(w.Has) != 0 || len(w.Blocks) != 0 || w.Next != 0 {
			return response{}, fmt.Errorf("error response carries results")
		}
		return r, nil
	}
	if w.Next < 0 || w.Next > MaxCIDs {
		return response{}, fmt.Errorf("response: next %d out of range [0, %d]", w.Next, MaxCIDs)
	}
	var err error
	if r.blocks, err = parseBlocks(w.Blocks, MaxGetPayload); err != nil {
		return response{}, fmt.Errorf("response: %w", err)
	}
	return r, nil
}

// encodedSize is a generous estimate of the encoded size of a message
// holding cids and blocks, to size the buffer once: growing a 16 MiB buffer
// by doubling costs more than the rest of the encoding.
func encodedSize(cids []cid.Cid, blocks []blockstore.Block) int {
	const perCID = 48 // a BLAKE3-256 CIDv1 (36 bytes) with its CBOR header
	size := 16 + perCID*len(cids)
	for _, b := range blocks {
		size += perCID + 8 + len(b.Data)
	}
	return size
}

func cidBytes(cs []cid.Cid) [][]byte {
	if len(cs) == 0 {
		return nil
	}
	out := make([][]byte, len(cs))
	for i, c := range cs {
		out[i] = c.Bytes()
	}
	return out
}

func toWireBlocks(bs []blockstore.Block) []wireBlock {
	if len(bs) == 0 {
		return nil
	}
	out := make([]wireBlock, len(bs))
	for i, b := range bs {
		out[i] = wireBlock{CID: b.CID.Bytes(), Data: frameBytes(b.Data)}
	}
	return out
}

// parseCIDs turns wire CIDs into CIDs weft stores, refusing anything else
// (wrong version, codec or hash) so nothing downstream sees them.
func parseCIDs(raw [][]byte) ([]cid.Cid, error) {
	out := make([]cid.Cid, len(raw))
	for i, b := range raw {
		c, err := parseCID(b)
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

func parseCID(b []byte) (cid.Cid, error) {
	c, err := cid.Cast(b)
	if err != nil {
		return cid.Undef, fmt.Errorf("cid %x: %w", b, err)
	}
	if err := blockstore.CheckCID(c); err != nil {
		return cid.Undef, err
	}
	return c, nil
}

// parseBlocks turns wire blocks into blocks, bounding each block and their
// total. The blocks are not verified against their CIDs: that costs a hash
// each and is the receiver's job.
func parseBlocks(raw []wireBlock, maxPayload int) ([]blockstore.Block, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	out := make([]blockstore.Block, len(raw))
	total := 0
	for i, wb := range raw {
		c, err := parseCID(wb.CID)
		if err != nil {
			return nil, err
		}
		if len(wb.Data) > maxBlockSize {
			return nil, fmt.Errorf("block %s: %d bytes exceeds the %d-byte limit", c, len(wb.Data), maxBlockSize)
		}
		total += len(wb.Data)
		if total > maxPayload {
			return nil, fmt.Errorf("blocks exceed the %d-byte payload limit", maxPayload)
		}
		out[i] = blockstore.Block{CID: c, Data: wb.Data}
	}
	return out, nil
}
