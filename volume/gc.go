package volume

import (
	"context"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
)

// GC frees every stored block that no live root reaches: disk heads,
// replicas and roots pinned by open views. It runs concurrently with
// commits, and never frees a block a commit has stored (see mark), nor one
// stored for a peer within the grace period (Config.PeerBlocks).
func (m *Manager) GC(ctx context.Context) (GCStats, error) {
	start := time.Now()
	gen, marked, roots, err := m.mark(ctx)
	if err != nil {
		return GCStats{}, err
	}
	swept, err := m.store.Sweep(ctx, gen, func(c cid.Cid) bool {
		if _, ok := marked[c.KeyString()]; ok {
			return true
		}
		return m.cfg.PeerBlocks != nil && m.cfg.PeerBlocks.InGrace(c)
	})
	if err != nil {
		return GCStats{}, fmt.Errorf("gc: %w", err)
	}
	return GCStats{
		Roots: roots, Marked: int64(len(marked)),
		SweptBlocks: swept.Blocks, SweptBytes: swept.Bytes, Reclaimed: swept.Reclaimed,
		Duration: time.Since(start),
	}, nil
}

// DropUnreachable deletes those of cids that no live root reaches, as GC
// would, and returns them; the others stay. Scrub calls it for corrupt
// blocks no member can replace: garbage that the other holders already
// collected is deleted here too rather than reported as unrepairable.
func (m *Manager) DropUnreachable(ctx context.Context, cids []cid.Cid) ([]cid.Cid, error) {
	if len(cids) == 0 {
		return nil, nil
	}
	gen, marked, _, err := m.mark(ctx)
	if err != nil {
		return nil, err
	}
	doomed := make(map[string]bool)
	for _, c := range cids {
		if _, ok := marked[c.KeyString()]; !ok {
			doomed[c.KeyString()] = true
		}
	}
	if len(doomed) == 0 {
		return nil, nil
	}
	if _, err := m.store.Sweep(ctx, gen, func(c cid.Cid) bool { return !doomed[c.KeyString()] }); err != nil {
		return nil, fmt.Errorf("drop unreachable: %w", err)
	}
	// A block put again since the mark began is kept, live or not.
	var dropped []cid.Cid
	for _, c := range cids {
		if !doomed[c.KeyString()] {
			continue
		}
		if ok, err := m.store.Has(ctx, c); err == nil && !ok {
			dropped = append(dropped, c)
		}
	}
	return dropped, nil
}

// mark begins a collection and returns its generation, the keys of every
// block a live root reaches, and how many roots it read. It never frees a
// block a commit has stored since, because the store keeps every block
// written (or re-written) after BeginGC and the roots are read only after
// that point.
func (m *Manager) mark(ctx context.Context) (gen uint64, marked map[string]struct{}, roots int, err error) {
	m.gcMu.Lock()
	gen = m.store.BeginGC()
	live, err := m.liveRoots()
	m.gcMu.Unlock()
	if err != nil {
		return 0, nil, 0, err
	}
	marked = make(map[string]struct{})
	visit := func(c cid.Cid) bool {
		k := c.KeyString()
		if _, seen := marked[k]; seen {
			return false
		}
		marked[k] = struct{}{}
		return true
	}
	for _, root := range live {
		// A map that cannot be read aborts the sweep: better to keep
		// garbage than to free blocks of a root we could not see whole.
		if err := m.maps.Mark(ctx, root, visit); err != nil {
			return 0, nil, 0, fmt.Errorf("gc: mark %s: %w", root, err)
		}
	}
	return gen, marked, len(live), nil
}

// liveRoots returns every distinct root GC must keep, those of every catalog
// whose save failed since the last good one included. A root it cannot
// parse aborts the collection rather than letting its blocks be swept.
func (m *Manager) liveRoots() ([]cid.Cid, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[cid.Cid]bool{cid.Undef: true}
	var out []cid.Cid
	var bad error
	add := func(c cid.Cid) {
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	// The catalog keeps roots as text (its file format); "" is an empty disk.
	addText := func(s string) {
		c, err := parseRoot(s)
		if err != nil {
			bad = fmt.Errorf("gc: live %w", err)
			return
		}
		add(c)
	}
	for _, cat := range append([]*catalog{m.cat}, m.unsaved...) {
		for _, d := range cat.Disks {
			addText(d.Root)
		}
		for _, reps := range cat.Replicas {
			for _, r := range reps {
				addText(r.Root)
			}
		}
		for _, s := range cat.Spacesuits {
			addText(s.Root)
		}
	}
	for root := range m.pins {
		add(root)
	}
	if m.cfg.ExtraRoots != nil {
		for _, c := range m.cfg.ExtraRoots() {
			add(c)
		}
	}
	return out, bad
}
