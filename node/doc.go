// Package node wires weft's parts into one daemon and serves the local API
// that the weft CLI talks to. It holds composition, adapters and the
// local API; the distributed system itself lives in package cluster (and
// cluster/transfer), over the network contract of mesh/meshnet.
//
//   - core.go: Core, a complete node without sockets — block store,
//     volumes, the cluster layer, fetch-on-read, heal, the transfer
//     service — over any meshnet.Network (nil: a node alone). node.Run
//     adds what needs the OS (home lock, identity, cluster secret, the
//     libp2p mesh, NBD, FUSE, HTTP, the unix socket) around a Core;
//     node/nodetest builds Cores over the in-memory network.
//   - server.go and handlers_*.go: the local API's HTTP handlers, each
//     decode → one call into volume, cluster or transfer → encode.
//   - nbd_exports.go, mounts.go: the NBD and FUSE doors' adapters; both
//     open refs through cluster.Open.
//   - metrics.go, dashboard.go: Prometheus metrics and the dashboard.
//   - config.go, init.go, identity.go, cluster.go, jointoken.go: the home.
//
// A node lives in a home directory:
//
//	HOME/config.json     the node's Config (site, listen addresses, NBD and HTTP addresses)
//	HOME/identity.key    the node's Ed25519 key, PEM PKCS#8, mode 0600
//	HOME/cluster.secret  the mesh's shared secret, mode 0600
//	HOME/lock            flock'ed by the running daemon: one daemon per home
//	HOME/weft.sock       the local API, HTTP/JSON over a unix socket, mode 0600
//	HOME/blocks/         the block store
//	HOME/volumes/        disk metadata and write overlays
//	HOME/mesh/           catalog.json (the catalog), peers.json (for rejoin),
//	                     transfers.json (the transfer journal), partial.json
//	                     (roots of transfers received in part)
//
// # Local API
//
// The daemon serves the local API on HOME/weft.sock (and the dashboard's
// read-only part over HTTP); its routes, types, error codes and export
// stream are the contract of package api, which the CLI imports.
package node
