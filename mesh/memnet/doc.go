// Package memnet is an in-memory network of named peers for tests and
// simulations: many nodes in one process, connected by buffered pipes,
// with partitions (Cut) and dead nodes (Down) to inject failures.
//
// Streams are reliable and ordered, like libp2p streams. A stream is
// broken (both ends fail with ErrLinkDown) when the link it runs over is
// cut or either peer goes down; closing one end is seen by the other end
// as end of stream once it has read what was sent.
package memnet
