package mesh

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/weft-mesh/weft/internal/jsonfile"
)

const (
	peerFileName = "peers.json"
	// rejoin backoff: retried quickly after a restart, then less and less
	// often while the cluster stays unreachable.
	rejoinMinBackoff = time.Second
	rejoinMaxBackoff = 30 * time.Second
	rejoinTimeout    = 15 * time.Second
)

// peerFile holds the known members' multiaddrs, in memory and, with a
// directory, in dir/peers.json for the next start.
type peerFile struct {
	path string // "" keeps the list in memory only

	mu    sync.Mutex
	addrs []string // sorted, with /p2p/<id>
}

type peerFileContent struct {
	Peers []string `json:"peers"`
}

func openPeerFile(dir string) (*peerFile, error) {
	if dir == "" {
		return &peerFile{}, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mesh state directory: %w", err)
	}
	pf := &peerFile{path: filepath.Join(dir, peerFileName)}
	var c peerFileContent
	err := jsonfile.Load(pf.path, &c)
	if errors.Is(err, fs.ErrNotExist) {
		return pf, nil
	}
	if err != nil {
		return nil, fmt.Errorf("known peers: %w", err)
	}
	pf.addrs = c.Peers
	return pf, nil
}

// list returns the known peers' multiaddrs.
func (pf *peerFile) list() []string {
	pf.mu.Lock()
	defer pf.mu.Unlock()
	return slices.Clone(pf.addrs)
}

// save replaces the known peers with addrs if they differ. An empty list is
// never saved: the node would forget its cluster while it is alone.
func (pf *peerFile) save(addrs []string) error {
	slices.Sort(addrs)
	pf.mu.Lock()
	defer pf.mu.Unlock()
	if len(addrs) == 0 || slices.Equal(addrs, pf.addrs) {
		return nil
	}
	pf.addrs = addrs
	if pf.path == "" {
		return nil
	}
	if err := jsonfile.Save(pf.path, peerFileContent{Peers: addrs}, 0o600); err != nil {
		return fmt.Errorf("known peers: %w", err)
	}
	return nil
}

// savePeers records the multiaddrs of every member that did not leave.
func (m *Mesh) savePeers() {
	var addrs []string
	for _, mem := range m.members.list(time.Now()) {
		if mem.State == StateLeft {
			continue
		}
		for _, a := range mem.Addrs {
			addrs = append(addrs, a+"/p2p/"+mem.ID.String())
		}
	}
	if err := m.peers.save(addrs); err != nil {
		m.log.Warn("known peers not saved", "err", err)
	}
}

// rejoinLoop joins the known peers again whenever this node has no live
// member but itself: after a restart, or after being cut off long enough
// to be declared dead.
func (m *Mesh) rejoinLoop(ctx context.Context) {
	backoff := time.Duration(0) // the first attempt is immediate
	timer := time.NewTimer(backoff)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		addrs := m.peers.list()
		if m.members.alive() > 0 || len(addrs) == 0 {
			backoff = rejoinMinBackoff
			timer.Reset(backoff)
			continue
		}
		jctx, cancel := context.WithTimeout(ctx, rejoinTimeout)
		n, err := m.Join(jctx, addrs)
		cancel()
		if n > 0 {
			backoff = rejoinMinBackoff
		} else {
			backoff = min(max(2*backoff, rejoinMinBackoff), rejoinMaxBackoff)
			if ctx.Err() == nil {
				m.log.Info("rejoin failed, will retry", "in", backoff, "err", err)
			}
		}
		timer.Reset(backoff)
	}
}

// SeedPeers records addrs (multiaddrs with /p2p/) as known peers in dir,
// the mesh state directory of a node not started yet, so that its first
// start joins them as a restart rejoins the peers it knew.
func SeedPeers(dir string, addrs []string) error {
	pf, err := openPeerFile(dir)
	if err != nil {
		return err
	}
	return pf.save(slices.Clone(addrs))
}
