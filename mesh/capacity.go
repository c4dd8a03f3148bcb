package mesh

import (
	"context"
	"time"
)

const (
	// capacityInterval is how often Config.Capacity is sampled.
	capacityInterval = 10 * time.Second
	// updateTimeout bounds waiting for a metadata update to go out.
	updateTimeout = 5 * time.Second
)

// sampleCapacity reads Config.Capacity and reports whether it changed.
func (m *Mesh) sampleCapacity() bool {
	if m.cfg.Capacity == nil {
		return false
	}
	used, free := m.cfg.Capacity()
	changed := m.used.Swap(used) != used
	if m.free.Swap(free) != free {
		changed = true
	}
	return changed
}

// capacityLoop gossips the node's capacity when it changes.
func (m *Mesh) capacityLoop(ctx context.Context) {
	if m.cfg.Capacity == nil {
		return
	}
	tick := time.NewTicker(capacityInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !m.sampleCapacity() {
			continue
		}
		if err := m.ml.UpdateNode(updateTimeout); err != nil {
			m.log.Debug("capacity update not gossiped yet", "err", err)
		}
	}
}
