// Package mesh is the network layer of a weft node: one libp2p host (TCP and
// QUIC, Noise or TLS, never insecure), gossip membership with hashicorp
// memberlist running over libp2p streams, cluster admission by a shared
// secret, and a private kad-dht for peer routing and provider records of
// roots. *Mesh is the real-network meshnet.Network (also a Learner and a
// Provider): no libp2p or multiaddr type crosses this package's API, so the
// node above it runs over the in-memory network (memnet) as well.
//
// # Admission
//
// libp2p private networks (pnet) do not work with QUIC, so admission is a
// handshake on every new peer instead. The dialing side opens a stream on
// /weft/admit/1.0.0 and sends
//
//	HMAC-SHA256(secret, "weft-admit-v1" || initiator ID || responder ID || 0x01)
//
// The responder checks it and answers with the same MAC over role byte 0x02;
// the initiator checks that. The MAC is bound to both authenticated peer IDs,
// so a proof seen by one peer cannot be replayed to another. A peer that
// passes is admitted for as long as it stays connected; a wrong or late proof
// closes every connection to it. The side that refuses a proof resets the
// stream and closes the connections with a refusal code, so the other side
// tells "wrong cluster secret" (ErrNotAdmitted) from a handshake cut by a
// lost connection, which the initiator tries again on the peer's other
// connections for up to 5 s and otherwise reports as "admission handshake
// failed". Every weft protocol handler (the
// application's, memberlist's and the DHT's) waits briefly for the remote
// peer's admission and resets the stream otherwise, and outbound weft streams
// wait for the remote's admission before they are used.
//
// # Gossip over libp2p
//
// memberlist sees each node as a synthetic address: an IPv6 address in
// fd00::/8 filled from sha256(peer ID) with a fixed port, and the node name is
// the peer ID string. Best-effort packets travel as one short libp2p stream
// each on /weft/gossip/packet/1.0.0 (a length-bounded payload, then close);
// memberlist's reliable stream channel (push-pull, TCP pings) is a libp2p
// stream on /weft/gossip/stream/1.0.0 wrapped as a net.Conn. Node metadata is
// CBOR: the site, the node's listen multiaddrs and its used/free capacity.
//
// # Rejoin
//
// With a state directory, the known members' multiaddrs are kept in
// peers.json. The node joins again, at most rejoinMaxBackoff apart, every
// known peer that is not a live member, so a restarted node finds its
// cluster by itself and the two sides of a healed cut find each other.
// Joins dial past libp2p's dial backoff, which failed dials during a cut
// grow to minutes.
package mesh
