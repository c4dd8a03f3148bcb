package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/weft-mesh/weft/internal/peerlimit"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
)

// CatalogProtocol hands catalog entries straight to a member and waits for
// it to merge them. Gossip carries every entry too, but only eventually: a
// sync flush must not return before the nodes holding its blocks also know
// the root that names them.
const CatalogProtocol meshnet.Protocol = "/weft/catalog/1.0.0"

// maxCatalogPush bounds one pushed message.
const maxCatalogPush = 1 << 20

// serveCatalogPushTimeout bounds one push served, waiting for its turn
// included, so that a stalled member does not hold a stream open.
const serveCatalogPushTimeout = 30 * time.Second

// maxPushesPerPeer bounds the pushes of one member served at once: each
// holds up to maxCatalogPush bytes while it is read, so a member opening
// many streams makes the node hold at most this many messages; the other
// streams wait for a turn, holding nothing, until the serve timeout.
const maxPushesPerPeer = 4

// catalogPushes are the bounds on the catalog pushes a node serves.
type catalogPushes struct {
	turns    *peerlimit.Turns
	serveFor time.Duration // serveCatalogPushTimeout; shorter in tests
}

func newCatalogPushes() catalogPushes {
	return catalogPushes{turns: &peerlimit.Turns{Limit: maxPushesPerPeer}, serveFor: serveCatalogPushTimeout}
}

// pushTimeout bounds one push to one member.
const pushTimeout = 10 * time.Second

// serveCatalogPush merges the entries a member pushes and acknowledges.
// The message is a 4-byte big-endian length (at most maxCatalogPush), the
// encoded entries, and the answer one byte.
func (c *Cluster) serveCatalogPush(ctx context.Context, from meshnet.PeerID, s io.ReadWriteCloser) {
	ctx, cancel := context.WithTimeout(ctx, c.pushes.serveFor)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { meshnet.Abort(s) })
	defer stop()
	done, err := c.pushes.turns.Take(ctx, nil, from.String())
	if err != nil {
		c.log.Warn("catalog push refused: no turn in time", "peer", from, "err", err)
		return
	}
	defer done()
	es, err := readCatalogPush(s)
	if err != nil {
		c.log.Warn("catalog push refused", "peer", from, "err", err)
		meshnet.Abort(s)
		return
	}
	c.cat.Merge(es)
	_, _ = s.Write([]byte{1})
}

// readCatalogPush reads one pushed message: a 4-byte big-endian length (1
// to maxCatalogPush) and that many bytes of encoded entries.
func readCatalogPush(r io.Reader) ([]catalog.Entry, error) {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil, fmt.Errorf("catalog push size: %w", err)
	}
	l := binary.BigEndian.Uint32(size[:])
	if l == 0 || l > maxCatalogPush {
		return nil, fmt.Errorf("catalog push: bad size %d bytes, max %d", l, maxCatalogPush)
	}
	// Read, not allocated up front: a member stating 1 MiB and sending
	// nothing costs only what it sends.
	buf, err := io.ReadAll(io.LimitReader(r, int64(l)))
	if err == nil && len(buf) < int(l) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, fmt.Errorf("catalog push entries: %w", err)
	}
	es, err := catalog.Decode(buf)
	if err != nil {
		return nil, fmt.Errorf("catalog push entries: %w", err)
	}
	return es, nil
}

// catalogPushMessage frames es as readCatalogPush reads them.
func catalogPushMessage(es []catalog.Entry) ([]byte, error) {
	buf, err := catalog.Encode(es)
	if err != nil {
		return nil, err
	}
	if len(buf) > maxCatalogPush {
		return nil, fmt.Errorf("catalog push: %d bytes, max %d", len(buf), maxCatalogPush)
	}
	msg := make([]byte, 4+len(buf))
	binary.BigEndian.PutUint32(msg, uint32(len(buf)))
	copy(msg[4:], buf)
	return msg, nil
}

// pushEntries hands es to every other live member and returns how many
// merged them.
func (c *Cluster) pushEntries(ctx context.Context, es []catalog.Entry) (int, error) {
	msg, err := catalogPushMessage(es)
	if err != nil {
		return 0, err
	}
	_, acks, err := c.eachMember(func(id meshnet.PeerID) error { return c.pushTo(ctx, id, msg) })
	return acks, err
}

// eachMember runs fn for every other live member at once, and returns how
// many it ran for, how many returned nil, and the others' errors.
func (c *Cluster) eachMember(fn func(id meshnet.PeerID) error) (ran, ok int, err error) {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, m := range c.Live() {
		id := meshnet.PeerID(m.ID)
		if id == c.self {
			continue
		}
		ran++
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := fn(id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", id, err))
				return
			}
			ok++
		}()
	}
	wg.Wait()
	return ran, ok, errors.Join(errs...)
}

// pushTo sends msg (catalogPushMessage) to id and waits for the answer.
func (c *Cluster) pushTo(ctx context.Context, id meshnet.PeerID, msg []byte) error {
	return c.ask(ctx, id, CatalogProtocol, pushTimeout, msg, func(r io.Reader) error {
		var ack [1]byte
		if _, err := io.ReadFull(r, ack[:]); err != nil {
			return fmt.Errorf("no acknowledgement: %w", err)
		}
		return nil
	})
}

// ask opens a stream of proto to id, writes msg and reads the answer with
// read, all within timeout.
func (c *Cluster) ask(ctx context.Context, id meshnet.PeerID, proto meshnet.Protocol, timeout time.Duration, msg []byte, read func(io.Reader) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s, err := c.net.Open(ctx, id, proto)
	if err != nil {
		return err
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { meshnet.Abort(s) })
	defer stop()
	if _, err := s.Write(msg); err != nil {
		return err
	}
	return read(s)
}
