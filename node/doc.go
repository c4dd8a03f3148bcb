// Package node wires weft's parts into one daemon and serves the local API
// that the weft CLI talks to.
//
// A node lives in a home directory:
//
//	HOME/config.json   the node's Config (site, listen addresses, NBD and HTTP addresses)
//	HOME/identity.key  the node's Ed25519 key, PEM PKCS#8, mode 0600
//	HOME/lock          flock'ed by the running daemon: one daemon per home
//	HOME/weft.sock     the local API, HTTP/JSON over a unix socket, mode 0600
//	HOME/blocks/       the block store
//	HOME/volumes/      disk metadata and write overlays
//
// # Local API
//
// The daemon serves the local API on HOME/weft.sock (and the dashboard's
// read-only part over HTTP); its routes, types, error codes and export
// stream are the contract of package api, which the CLI imports.
package node
