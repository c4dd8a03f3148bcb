package cluster

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
)

// CatalogGetProtocol asks a member for its newest version of one catalog
// key, tombstone included. A take asks every live member before it
// decides: gossip brings a record to every member only eventually, and a
// taker that missed the owner's last record would take the disk at an
// older held root, whose blocks the members that merged the newer record
// collect as garbage (torture, 2026-12-03: a take named a root one of
// whose blocks only the dead owner still held).
const CatalogGetProtocol meshnet.Protocol = "/weft/catalog-get/1.0.0"

// maxCatalogGetKey bounds the key a member asks for: far above any key
// the catalog makes (a prefix and a disk and replica name).
const maxCatalogGetKey = 1024

// catalogGetTimeout bounds one question, asked or answered.
const catalogGetTimeout = 5 * time.Second

// serveCatalogGet answers a member's question with this node's newest
// version of the key it names: a 2-byte big-endian length (1 to
// maxCatalogGetKey) and the key, answered by a catalogPushMessage of that
// version, or of none when the key is unknown here.
func (c *Cluster) serveCatalogGet(ctx context.Context, from meshnet.PeerID, s io.ReadWriteCloser) {
	ctx, cancel := context.WithTimeout(ctx, catalogGetTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { meshnet.Abort(s) })
	defer stop()
	key, err := readCatalogGet(s)
	if err != nil {
		c.log.Warn("catalog question refused", "peer", from, "err", err)
		meshnet.Abort(s)
		return
	}
	var es []catalog.Entry
	if e, ok := c.cat.Lookup(key); ok {
		es = append(es, e)
	}
	msg, err := catalogPushMessage(es)
	if err != nil {
		c.log.Warn("catalog question not answered", "peer", from, "key", key, "err", err)
		meshnet.Abort(s)
		return
	}
	_, _ = s.Write(msg)
}

// readCatalogGet reads a question: a 2-byte big-endian length (1 to
// maxCatalogGetKey) and that many bytes of key.
func readCatalogGet(r io.Reader) (string, error) {
	var size [2]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return "", fmt.Errorf("catalog question size: %w", err)
	}
	l := binary.BigEndian.Uint16(size[:])
	if l == 0 || l > maxCatalogGetKey {
		return "", fmt.Errorf("catalog question: bad key size %d bytes, max %d", l, maxCatalogGetKey)
	}
	key := make([]byte, l)
	if _, err := io.ReadFull(r, key); err != nil {
		return "", fmt.Errorf("catalog question key: %w", err)
	}
	return string(key), nil
}

// catalogGetMessage frames key as readCatalogGet reads it.
func catalogGetMessage(key string) ([]byte, error) {
	if len(key) == 0 || len(key) > maxCatalogGetKey {
		return nil, fmt.Errorf("catalog question: bad key size %d bytes, max %d", len(key), maxCatalogGetKey)
	}
	msg := make([]byte, 2+len(key))
	binary.BigEndian.PutUint16(msg, uint16(len(key)))
	copy(msg[2:], key)
	return msg, nil
}

// freshen asks every other live member for its newest version of key and
// merges the answers, so that a decision about key that follows sees the
// newest record any reachable member holds. It returns how many members
// were asked and how many answered; a member that does not answer (cut
// off, or a version without the protocol) is skipped.
func (c *Cluster) freshen(ctx context.Context, key string) (asked, answered int, err error) {
	msg, err := catalogGetMessage(key)
	if err != nil {
		return 0, 0, err
	}
	asked, answered, err = c.eachMember(func(id meshnet.PeerID) error {
		es, err := c.askEntry(ctx, id, msg)
		if err != nil {
			return err
		}
		c.cat.Merge(slices.DeleteFunc(es, func(e catalog.Entry) bool { return e.Key != key }))
		return nil
	})
	if err != nil {
		c.log.Debug("catalog question unanswered", "key", key, "err", err)
	}
	return asked, answered, nil
}

// askEntry sends id a question (catalogGetMessage) and reads its answer.
func (c *Cluster) askEntry(ctx context.Context, id meshnet.PeerID, msg []byte) ([]catalog.Entry, error) {
	var es []catalog.Entry
	err := c.ask(ctx, id, CatalogGetProtocol, catalogGetTimeout, msg, func(r io.Reader) (err error) {
		es, err = readCatalogPush(r)
		return err
	})
	return es, err
}
