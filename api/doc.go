// Package api is the local API contract between the weft CLI and its
// daemon: the JSON request and response types of the daemon's unix-socket
// HTTP API, its error codes, the client, and the reader of the export
// stream. It imports nothing else of weft, so the CLI needs no daemon
// internals to talk to the daemon.
package api
