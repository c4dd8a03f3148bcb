package exchange

import "github.com/weft-mesh/weft/blockstore"

// Protocol is the stream protocol ID the exchange is served on.
const Protocol = "/weft/blocks/1.0.0"

// Wire limits. Both sides enforce them on everything they read.
const (
	// MaxCIDs bounds the CIDs of a Has or Get request and the blocks of a Put.
	MaxCIDs = 4096
	// MaxGetPayload bounds the block bytes of one Get response.
	MaxGetPayload = 16 << 20
	// MaxPutPayload bounds the block bytes of one Put request.
	MaxPutPayload = 16 << 20
	// MaxFrameSize bounds any frame: a full payload plus room for MaxCIDs
	// CIDs and the CBOR framing around them.
	MaxFrameSize = 17 << 20
)

// maxMessageLen bounds the text of an error response. The server cuts
// longer messages; the client refuses them.
const maxMessageLen = 1024

// maxBlockSize is the largest block either side sends or accepts: the
// largest block a store holds. It is below MaxGetPayload and MaxPutPayload,
// so any single block fits one round trip.
const maxBlockSize = blockstore.MaxBlockSize
