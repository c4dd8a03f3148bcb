// Package nbd is an NBD (Network Block Device) server, written from the
// protocol specification (doc/proto.md of the NBD project). It serves the
// exports of an Exports implementation on any net.Listener; the node wires
// it to disk heads and replicas.
//
// # Negotiation
//
// Fixed newstyle only (the oldstyle handshake is long deprecated), with
// NBD_FLAG_NO_ZEROES. Options:
//   - NBD_OPT_EXPORT_NAME, NBD_OPT_ABORT, NBD_OPT_LIST (the exports the
//     client may open).
//   - NBD_OPT_INFO and NBD_OPT_GO, replying NBD_INFO_EXPORT,
//     NBD_INFO_NAME and NBD_INFO_DESCRIPTION when asked, and always
//     NBD_INFO_BLOCK_SIZE: minimum 1 (any alignment works), preferred the
//     export's block size, maximum MaxPayload (32 MiB).
//   - NBD_OPT_STARTTLS with an X.509 certificate (crypto/tls); with
//     Config.TLSRequired every other option but ABORT gets
//     NBD_REP_ERR_TLS_REQD until TLS is up. TLS-PSK is not offered: Go's
//     crypto/tls has no PSK cipher suites.
//   - NBD_OPT_STRUCTURED_REPLY is refused (NBD_REP_ERR_UNSUP): replies are
//     simple, so there is no block status and no sparse reads. Other
//     options get NBD_REP_ERR_UNSUP.
//
// Refusals are the protocol's: an unknown export gets NBD_REP_ERR_UNKNOWN
// and a client outside the export's policy NBD_REP_ERR_POLICY, after which
// the client may try another option; NBD_OPT_EXPORT_NAME has no error
// reply, so its refusal closes the connection. Malformed negotiation (bad
// magic, unknown client flags, option data over 16 KiB) closes the
// connection, and the whole negotiation runs under Config.HandshakeTimeout.
//
// # Transmission
//
// NBD_CMD_READ, WRITE, FLUSH, TRIM, WRITE_ZEROES (NBD_CMD_FLAG_NO_HOLE
// writes zeros instead of punching) and DISC, with NBD_CMD_FLAG_FUA on
// any command (a write then a flush). Flags advertised: HAS_FLAGS,
// SEND_FLUSH, SEND_FUA, CAN_MULTI_CONN, and READ_ONLY or SEND_TRIM and
// SEND_WRITE_ZEROES. Multi-conn is safe because Exports.Open returns
// exports that share state for one name: a flush on one connection covers
// the writes replied to on all of them.
//
// One goroutine reads a connection's requests and serves the small reads
// and writes itself (replies batched into one writev); every other request
// is served by a worker goroutine, at most Config.MaxInFlight (and
// MaxInFlightBytes of buffers) at once, and replies go out whole under a
// mutex, possibly out of order.
// Every request is checked before a buffer is taken for it. Errors: EINVAL
// for length 0, reads and trims past the end, reads or writes over
// MaxPayload, unknown commands and flags; ENOSPC for writes past the end
// (as the specification asks) and a full store; EPERM for changes to a
// read-only export; EIO for other storage failures. A refused write's
// payload is skipped without being buffered. A request whose header has a
// bad magic closes the connection; a write whose payload does not arrive
// whole is never applied, so a client that vanishes mid-write leaves the
// export as it was before that write.
//
// Config.Observer, if set, is told of every READ, WRITE, FLUSH, TRIM and
// WRITE_ZEROES once served (its kind, length, time in the export and
// error), for metrics; refused requests included, unknown commands not.
package nbd
