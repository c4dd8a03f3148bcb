package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/weft-mesh/weft/mesh/catalog"
)

// catalogProtocol hands catalog entries straight to a member and waits for
// it to merge them. Gossip carries every entry too, but only eventually: a
// sync flush must not return before the nodes holding its blocks also know
// the root that names them.
const catalogProtocol = "/weft/catalog/1.0.0"

// maxCatalogPush bounds one pushed message.
const maxCatalogPush = 1 << 20

// serveCatalogPush merges the entries a member pushes and acknowledges.
func (n *meshNode) serveCatalogPush(s network.Stream) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(30 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(s, size[:]); err != nil {
		s.Reset()
		return
	}
	l := binary.BigEndian.Uint32(size[:])
	if l == 0 || l > maxCatalogPush {
		n.log.Warn("catalog push: bad size", "peer", s.Conn().RemotePeer(), "bytes", l)
		s.Reset()
		return
	}
	buf := make([]byte, l)
	if _, err := io.ReadFull(s, buf); err != nil {
		s.Reset()
		return
	}
	es, err := catalog.Decode(buf)
	if err != nil {
		n.log.Warn("catalog push: bad entries", "peer", s.Conn().RemotePeer(), "err", err)
		s.Reset()
		return
	}
	n.cat.Merge(es)
	_, _ = s.Write([]byte{1})
}

// pushEntries hands es to every other live member and returns how many
// merged them.
func (n *meshNode) pushEntries(ctx context.Context, es []catalog.Entry) (int, error) {
	buf, err := catalog.Encode(es)
	if err != nil {
		return 0, err
	}
	if len(buf) > maxCatalogPush {
		return 0, fmt.Errorf("catalog push: %d bytes, max %d", len(buf), maxCatalogPush)
	}
	var (
		mu   sync.Mutex
		acks int
		errs []error
		wg   sync.WaitGroup
	)
	for _, m := range n.members() {
		id := peer.ID(m.ID)
		if id == n.self {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := n.pushTo(ctx, id, buf)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", id, err))
				return
			}
			acks++
		}()
	}
	wg.Wait()
	return acks, errors.Join(errs...)
}

func (n *meshNode) pushTo(ctx context.Context, id peer.ID, buf []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := n.net.NewStream(ctx, id, catalogProtocol)
	if err != nil {
		return err
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	msg := make([]byte, 4+len(buf))
	binary.BigEndian.PutUint32(msg, uint32(len(buf)))
	copy(msg[4:], buf)
	if _, err := s.Write(msg); err != nil {
		return err
	}
	var ack [1]byte
	if _, err := io.ReadFull(s, ack[:]); err != nil {
		return fmt.Errorf("no acknowledgement: %w", err)
	}
	return nil
}
