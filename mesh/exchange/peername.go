package exchange

import "github.com/mr-tron/base58"

// PeerName prints a peer as errors and logs should name it: the base58
// form libp2p prints ("12D3KooW…"), since peers are raw peer ID bytes in
// the daemon, which would print as unreadable bytes.
func PeerName(peer string) string { return base58.Encode([]byte(peer)) }
