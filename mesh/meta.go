package mesh

import (
	"fmt"

	"github.com/fxamacker/cbor/v2"
	"github.com/multiformats/go-multiaddr"
)

// nodeMeta is what a node gossips about itself in memberlist's node
// metadata (at most memberlist.MetaMaxSize bytes), encoded as CBOR with
// integer keys so that it stays small and fields can be added.
type nodeMeta struct {
	Site  string   `cbor:"1,keyasint,omitempty"`
	Addrs [][]byte `cbor:"2,keyasint,omitempty"` // binary multiaddrs, without /p2p
	Used  int64    `cbor:"3,keyasint,omitempty"`
	Free  int64    `cbor:"4,keyasint,omitempty"`
	// Leaving is set just before a graceful leave, so that the others
	// record the node as left rather than dead.
	Leaving bool `cbor:"5,keyasint,omitempty"`
}

// metaDecMode decodes metadata from other nodes defensively: memberlist
// already bounds it to 512 bytes, these bound the structure inside.
var metaDecMode = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		MaxNestedLevels:  4,
		MaxArrayElements: 64,
		MaxMapPairs:      16,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	}.DecMode()
	if err != nil {
		panic(err) // the options are constants
	}
	return dm
}()

// encode returns m in at most limit bytes, dropping trailing addresses (the
// caller orders the most useful first) until it fits. It returns nil if
// even no address does not fit, which Validate's bound on the site rules out.
func (m nodeMeta) encode(limit int) []byte {
	for n := len(m.Addrs); n >= 0; n-- {
		m.Addrs = m.Addrs[:n]
		b, err := cbor.Marshal(m)
		if err == nil && len(b) <= limit {
			return b
		}
	}
	return nil
}

// decodeMeta parses metadata gossiped by another node. Addresses that do
// not parse are skipped.
func decodeMeta(b []byte) (nodeMeta, []multiaddr.Multiaddr, error) {
	var m nodeMeta
	if len(b) == 0 {
		return m, nil, nil
	}
	if err := metaDecMode.Unmarshal(b, &m); err != nil {
		return nodeMeta{}, nil, fmt.Errorf("decode node metadata: %w", err)
	}
	addrs := make([]multiaddr.Multiaddr, 0, len(m.Addrs))
	for _, raw := range m.Addrs {
		a, err := multiaddr.NewMultiaddrBytes(raw)
		if err != nil {
			continue
		}
		addrs = append(addrs, a)
	}
	return m, addrs, nil
}
