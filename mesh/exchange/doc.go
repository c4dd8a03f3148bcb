// Package exchange is weft's block exchange protocol: nodes ask a peer which
// blocks it has, fetch blocks from it, and hand it blocks to keep
// (replication and self-heal).
//
// It runs over any reliable, ordered byte stream. In the daemon that is a
// libp2p stream on Protocol; in tests an in-memory pipe (see mesh/memnet).
// The package knows nothing of libp2p: a Dialer opens streams and the host
// hands incoming streams to Server.ServeStream.
//
// # Wire format
//
// A stream carries request/response round trips, one at a time, for as long
// as both sides keep it open. Every message is a frame: an unsigned varint
// length, then that many bytes of CBOR, decoded strictly (unknown fields,
// duplicate keys, tags and indefinite lengths are refused).
//
//	request:  {1: op, 2: [cid-bytes...], 3: [[cid-bytes, data]...]}
//	response: {1: code, 2: message, 3: [bool...], 4: [[cid-bytes, data]...], 5: next}
//
// op is 1 (has), 2 (get) or 3 (put). Has and Get carry CIDs; Put carries
// blocks. A response with code 0 answers the request; any other code is an
// error (not found, no space, corrupt, bad request, internal) with a
// message, which the client maps back to the blockstore sentinel errors.
//
//   - Has: the response holds one bool per requested CID, in order.
//   - Get: the response holds the blocks the server has among the first
//     next requested CIDs; the client asks again for the rest. The server
//     stops adding blocks at MaxGetPayload, so a response always fits a
//     frame, and it always answers at least one CID, so Get progresses.
//     Blocks the server finds corrupt are treated as missing. A store
//     with GetToSend (blockstore.Disk) sends blocks its process hashed
//     when storing them without hashing them again; bytes damaged on the
//     device since then reach the client, which verifies every block and
//     refuses them (ErrBadBlock).
//   - Put: the server verifies every block against its CID, asks
//     Server.Accept, stores the blocks durably, then answers.
//
// # Limits
//
// A request names at most MaxCIDs CIDs or blocks; a Put carries at most
// MaxPutPayload bytes of block data; no frame exceeds MaxFrameSize. The
// server answers a request that breaks a limit or does not decode with a
// bad-request error and closes the stream, since it can no longer trust the
// framing. The client splits calls that exceed the limits into several
// round trips.
//
// The server bounds what one peer's streams hold together (bounds.go): at
// most MaxServedPerPeer round trips of a peer are served at once, a
// request frame's buffer is taken only once its header arrived and its
// round trip has its turn, all peers together hold at most the node's
// budget of frame bytes (DefaultFrameBudget), a stream idle past
// IdleTimeout is closed, a request that stalls (requestMinProgress) and a
// reply read slower than replyFloorRate reset their stream. The client
// keeps at most MaxServedPerPeer round trips in flight to a peer,
// Foreground calls first, so it never waits at the server for a turn.
package exchange
