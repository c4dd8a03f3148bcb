package volume

import (
	"context"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
)

// GC frees every stored block that no live root reaches: disk heads,
// replicas and roots pinned by open views. It runs concurrently with
// commits, and never frees a block a commit has stored, because the store
// keeps every block written (or re-written) after the collection began and
// the roots are read only after that point.
func (m *Manager) GC(ctx context.Context) (GCStats, error) {
	start := time.Now()
	m.gcMu.Lock()
	gen := m.store.BeginGC()
	roots, err := m.liveRoots()
	m.gcMu.Unlock()
	if err != nil {
		return GCStats{}, err
	}

	marked := make(map[string]struct{})
	visit := func(c cid.Cid) bool {
		k := c.KeyString()
		if _, seen := marked[k]; seen {
			return false
		}
		marked[k] = struct{}{}
		return true
	}
	for _, root := range roots {
		// A map that cannot be read aborts the sweep: better to keep
		// garbage than to free blocks of a root we could not see whole.
		if err := m.maps.Mark(ctx, root, visit); err != nil {
			return GCStats{}, fmt.Errorf("gc: mark %s: %w", root, err)
		}
	}
	swept, err := m.store.Sweep(ctx, gen, func(c cid.Cid) bool {
		_, ok := marked[c.KeyString()]
		return ok
	})
	if err != nil {
		return GCStats{}, fmt.Errorf("gc: %w", err)
	}
	return GCStats{
		Roots: len(roots), Marked: int64(len(marked)),
		SweptBlocks: swept.Blocks, SweptBytes: swept.Bytes, Reclaimed: swept.Reclaimed,
		Duration: time.Since(start),
	}, nil
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
