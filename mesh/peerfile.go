package mesh

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/weft-mesh/weft/internal/jsonfile"
)

const (
	peerFileName = "peers.json"
	// rejoin backoff: retried quickly after a restart, then less often
	// while the cluster stays unreachable, but never more than 5 s apart:
	// the two sides of a healed cut (each dead to the other, so gossip
	// does not probe across) find each other only by a rejoin, and at
	// 30 s apart a 150 s cut took 16-21 s to heal after the link was back.
	// A known peer that is gone for good costs a dial every 5 s.
	rejoinMinBackoff = time.Second
	rejoinMaxBackoff = 5 * time.Second
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

// savePeers records the multiaddrs of every member that did not leave,
// and keeps the known peers the member table does not know: after a
// restart the table starts empty and fills only with the members that
// answered, and a peer out of reach then must stay known so that
// rejoinLoop tries it again. Forget drops a peer for good.
func (m *Mesh) savePeers() {
	var addrs []string
	inTable := make(map[string]bool)
	for _, mem := range m.members.list(time.Now()) {
		inTable[mem.ID.String()] = true
		if mem.State == StateLeft {
			continue
		}
		for _, a := range mem.Addrs {
			addrs = append(addrs, a+"/p2p/"+mem.ID.String())
		}
	}
	for _, a := range m.peers.list() {
		if _, id, ok := strings.Cut(a, "/p2p/"); ok && !inTable[id] {
			addrs = append(addrs, a)
		}
	}
	if err := m.peers.save(addrs); err != nil {
		m.log.Warn("known peers not saved", "err", err)
	}
}

// forget removes id's multiaddrs from the known peers.
func (pf *peerFile) forget(id peer.ID) error {
	pf.mu.Lock()
	addrs := slices.DeleteFunc(slices.Clone(pf.addrs), func(a string) bool { return strings.HasSuffix(a, "/p2p/"+id.String()) })
	pf.mu.Unlock()
	if len(addrs) == 0 {
		return nil
	}
	return pf.save(addrs)
}

// rejoinLoop joins again the known peers that are not live members:
// after a restart, after being cut off long enough to be declared dead,
// and while some of them stay out of reach. Live members alone are not
// enough: two nodes restarted together could join each other first and
// stay an island for as long as memberlist takes to gossip to the dead
// (30 s and more, seen by make torture).
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
		addrs := m.absentPeers()
		if len(addrs) == 0 {
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
			switch {
			case ctx.Err() != nil:
			case m.members.alive() == 0:
				m.log.Info("rejoin failed, will retry", "in", backoff, "err", err)
			default:
				// A known peer that is dead for good is retried this
				// way forever: not worth a line each time.
				m.log.Debug("known peers still unreachable, will retry", "in", backoff, "err", err)
			}
		}
		timer.Reset(backoff)
	}
}

// absentPeers returns the multiaddrs of the known peers that are not live
// members.
func (m *Mesh) absentPeers() []string {
	alive := make(map[string]bool)
	for _, mem := range m.members.list(time.Now()) {
		if mem.State == StateAlive {
			alive[peer.ID(mem.ID).String()] = true
		}
	}
	var out []string
	for _, a := range m.peers.list() {
		_, id, ok := strings.Cut(a, "/p2p/")
		if ok && !alive[id] && id != m.ID().String() {
			out = append(out, a)
		}
	}
	return out
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
