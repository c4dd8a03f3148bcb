package transfer

import (
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/internal/clock"
	"github.com/weft-mesh/weft/internal/jsonfile"
)

// partialTTL is how long the blocks of a transfer that did not finish are
// kept for a resume.
const partialTTL = 7 * 24 * time.Hour

// partialRoots are the roots of transfers this node received in part
// (running, cancelled, failed or cut off by a crash). Heal keeps their
// blocks here, as if the node used them, so that running the transfer
// again resumes from what arrived instead of finding it handed off as
// surplus. Persisted in DIR/partial.json, or in memory only without a
// path.
type partialRoots struct {
	path  string
	clock clock.Clock

	mu    sync.Mutex
	roots map[string]time.Time // root CID → when the transfer started
}

func loadPartialRoots(path string, clk clock.Clock) (*partialRoots, error) {
	p := &partialRoots{path: path, clock: clk, roots: map[string]time.Time{}}
	if path == "" {
		return p, nil
	}
	if err := jsonfile.Load(path, &p.roots); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("load partial transfers: %w", err)
	}
	// Keys are kept in the form done looks them up by: a root written any
	// other way (or not a CID at all) would hold its blocks forever.
	loaded := p.roots
	p.roots = make(map[string]time.Time, len(loaded))
	for r, since := range loaded {
		c, err := cid.Decode(r)
		if err != nil || clk.Now().Sub(since) > partialTTL {
			continue
		}
		// A start in the future (a clock set back, a hand-edited file)
		// would put off the expiry by as much.
		if now := clk.Now().UTC(); since.After(now) {
			since = now
		}
		if prev, ok := p.roots[c.String()]; !ok || since.Before(prev) {
			p.roots[c.String()] = since
		}
	}
	return p, nil
}

// add records root as received in part.
func (p *partialRoots) add(root cid.Cid) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.roots[root.String()]; ok {
		return nil
	}
	p.roots[root.String()] = p.clock.Now().UTC()
	return p.saveLocked()
}

// done forgets root: the transfer completed and its root is kept by a
// record of the volumes.
func (p *partialRoots) done(root cid.Cid) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.roots[root.String()]; !ok {
		return nil
	}
	delete(p.roots, root.String())
	return p.saveLocked()
}

func (p *partialRoots) list() []cid.Cid {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]cid.Cid, 0, len(p.roots))
	for r := range p.roots {
		if c, err := cid.Decode(r); err == nil {
			out = append(out, c)
		}
	}
	return out
}

func (p *partialRoots) saveLocked() error {
	if p.path == "" {
		return nil
	}
	if err := jsonfile.Save(p.path, p.roots, 0o600); err != nil {
		return fmt.Errorf("save partial transfers: %w", err)
	}
	return nil
}
