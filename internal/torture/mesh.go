package torture

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/weft-mesh/weft/api"
)

// daemonArgs are the flags of every daemon: heal passes every 2 s, so
// the faults of a short run are healed within it; the failure detector
// keeps its default timing (a member is dead about 3 s after it stops
// answering), the one operators run.
//
// Blocks pushed to a node are kept by gc for a grace period even when no
// root reaches them (the catalog entry naming their root follows the
// push); at the default 10 minutes the superseded blocks of a long run's
// commits filled the 1 GiB homes down to the reserve, and heal then
// refused copies by design. No fault lasts more than 10 s, so a 2-minute
// grace still covers every entry delayed by one.
var daemonArgs = []string{"--heal-interval", "2s", "--peer-block-grace", "2m", "--log-level", "info"}

// homeTmpfsSize is the tmpfs each node's home gets as root: room for the
// disks' blocks, overlays and index and for the garbage of a long run's
// commits (256 MiB filled up in 6 minutes), and a tmpfs takes memory only
// for what it holds, so filling one at a time is affordable.
const homeTmpfsSize = "1g"

// DiskSpec is one disk of the run.
type DiskSpec struct {
	Name      string
	BlockSize int64
	Replicas  int
	Sync      bool
}

// Disks are the disks of every run: async and sync, R=2 and R=3, block
// sizes from 16 KiB to 64 KiB (each holds several 4 KiB slots).
var Disks = []DiskSpec{
	{Name: "async-r2", BlockSize: 64 << 10, Replicas: 2},
	{Name: "sync-r2", BlockSize: 16 << 10, Replicas: 2, Sync: true},
	{Name: "async-r3", BlockSize: 32 << 10, Replicas: 3},
	{Name: "sync-r3", BlockSize: 64 << 10, Replicas: 3, Sync: true},
}

// Mesh is the daemons of a run, by site.
type Mesh struct {
	bin      string
	dir      string
	nodes    []*Node
	sites    *sites // nil on loopback
	tmpfs    []string
	diskSize int64
	logf     func(format string, args ...any)

	// The supervisor: it records the daemons that exit on their own and
	// restarts them, until close cancels supervise.
	supervise       context.Context
	stopSupervising context.CancelFunc
	restarts        sync.WaitGroup
	crashMu         sync.Mutex
	crashes         []string
}

// restartDelay is how long the supervisor waits before it restarts a
// daemon that exited on its own (systemd's Restart=always, RestartSec).
const restartDelay = time.Second

// crashed records c as a finding and restarts the node's daemon after
// restartDelay, as an operator's supervisor would, so that the run goes
// on and its final check still runs.
func (m *Mesh) crashed(c crash) {
	finding := fmt.Sprintf("daemon %s exited on its own: %s", c.node.Name, c.status)
	if f, err := os.Open(c.node.logPath); err == nil {
		if line := firstPanic(io.NewSectionReader(f, c.logFrom, 1<<40)); line != "" {
			finding += "; " + line
		}
		f.Close()
	}
	m.logf("crash: %s; restarting it in %v", finding, restartDelay)
	m.crashMu.Lock()
	defer m.crashMu.Unlock()
	m.crashes = append(m.crashes, finding)
	// Under crashMu, as close cancels supervise: no restart begins once
	// close waits for them.
	if m.supervise.Err() != nil {
		return
	}
	m.restarts.Go(func() {
		select {
		case <-m.supervise.Done():
			return
		case <-time.After(restartDelay):
		}
		if err := c.node.start(m.supervise, m.bin, daemonArgs); err != nil {
			m.logf("supervisor: restart %s: %v", c.node.Name, err)
			return
		}
		m.logf("supervisor: restarted %s", c.node.Name)
	})
}

// crashFindings are the daemons' exits the harness did not cause, in order.
func (m *Mesh) crashFindings() []string {
	m.crashMu.Lock()
	defer m.crashMu.Unlock()
	return append([]string(nil), m.crashes...)
}

// newMesh makes the homes of sitesN × perSite nodes, starts them and joins
// them into one mesh. With namespaces each site is a network namespace
// (root only) and each home a tmpfs; otherwise nodes listen on 127.0.0.x.
func newMesh(ctx context.Context, cfg Config, logf func(string, ...any)) (m *Mesh, err error) {
	m = &Mesh{bin: cfg.Bin, dir: cfg.Dir, diskSize: cfg.DiskSize, logf: logf}
	m.supervise, m.stopSupervising = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			m.close()
		}
	}()
	if cfg.Namespaces {
		if m.sites, err = newSites(cfg.Sites); err != nil {
			return m, fmt.Errorf("network namespaces: %w", err)
		}
	}
	for s := range cfg.Sites {
		for range cfg.NodesPerSite {
			i := len(m.nodes)
			dir := filepath.Join(cfg.Dir, fmt.Sprintf("node-%d", i))
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return m, err
			}
			n := &Node{Name: fmt.Sprintf("node-%d", i), Site: s, Home: filepath.Join(dir, "home"), logPath: filepath.Join(dir, "daemon.log"), IP: fmt.Sprintf("127.0.0.%d", 11+i)}
			if m.sites != nil {
				tmp := filepath.Join(dir, "fs")
				if err := os.Mkdir(tmp, 0o700); err != nil {
					return m, err
				}
				if err := runTool("mount", "-t", "tmpfs", "-o", "size="+homeTmpfsSize+",mode=0700", "tmpfs", tmp); err != nil {
					return m, err
				}
				m.tmpfs = append(m.tmpfs, tmp)
				n.Home, n.IP, n.netns = filepath.Join(tmp, "home"), m.sites.ips[s], m.sites.namespaces[s]
			}
			n.client = api.NewClient(n.Home)
			n.exited = m.crashed
			m.nodes = append(m.nodes, n)
		}
	}
	for i, n := range m.nodes {
		args := []string{"--home", n.Home, "init", "--site", fmt.Sprintf("site-%d", n.Site), "--nbd", "off", "--http", "off",
			"--listen", "/ip4/" + n.IP + "/tcp/0"}
		if i > 0 {
			args = append(args, "--cluster-secret-file", filepath.Join(m.nodes[0].Home, "cluster.secret"))
		}
		if out, err := exec.CommandContext(ctx, m.bin, args...).CombinedOutput(); err != nil {
			return m, fmt.Errorf("weft init %s: %v: %s", n.Name, err, out)
		}
		if err := n.start(ctx, m.bin, daemonArgs); err != nil {
			return m, err
		}
		id, err := call(ctx, n, (*api.Client).ID)
		if err != nil {
			return m, err
		}
		n.PeerID = id.PeerID
	}
	first, err := call(ctx, m.nodes[0], (*api.Client).ID)
	if err != nil {
		return m, err
	}
	for _, n := range m.nodes[1:] {
		if _, err := call(ctx, n, func(c *api.Client, ctx context.Context) (api.JoinResult, error) { return c.Join(ctx, first.Addrs) }); err != nil {
			return m, fmt.Errorf("join: %w", err)
		}
	}
	if err := m.waitFor(ctx, "every member alive everywhere", time.Minute, m.allAlive); err != nil {
		return m, err
	}
	for i, d := range Disks {
		n := m.nodes[i%len(m.nodes)]
		spec := api.DiskSpec{Name: d.Name, Size: m.diskSize, BlockSize: d.BlockSize, Replicas: d.Replicas, Sync: d.Sync}
		if _, err := call(ctx, n, func(c *api.Client, ctx context.Context) (api.DiskInfo, error) { return c.CreateDisk(ctx, spec) }); err != nil {
			return m, fmt.Errorf("create %s: %w", d.Name, err)
		}
		logf("created %s on %s (R=%d, sync=%v, block size %d KiB)", d.Name, n.Name, d.Replicas, d.Sync, d.BlockSize>>10)
	}
	return m, nil
}

// siteNodes returns the nodes of site s.
func (m *Mesh) siteNodes(s int) []*Node {
	var out []*Node
	for _, n := range m.nodes {
		if n.Site == s {
			out = append(out, n)
		}
	}
	return out
}

// byPeer returns the node with peer ID id, or nil.
func (m *Mesh) byPeer(id string) *Node {
	for _, n := range m.nodes {
		if n.PeerID == id {
			return n
		}
	}
	return nil
}

// owner asks the running nodes, in order, who owns disk; it returns nil
// when none answers.
func (m *Mesh) owner(ctx context.Context, disk string) *Node {
	for _, n := range m.nodes {
		if n.State() != nodeUp {
			continue
		}
		d, err := call(ctx, n, func(c *api.Client, ctx context.Context) (api.DiskInfo, error) { return c.DiskInfo(ctx, disk) })
		if err == nil && d.Owner != "" {
			return m.byPeer(d.Owner)
		}
	}
	return nil
}

// allAlive says whether every node sees every node alive.
func (m *Mesh) allAlive(ctx context.Context) (bool, string) {
	for _, n := range m.nodes {
		if ok, state := nodeSeesAll(ctx, n, len(m.nodes)); !ok {
			return false, n.Name + " sees " + state
		}
	}
	return true, ""
}

// waitFor polls cond until it holds or limit passes.
func (m *Mesh) waitFor(ctx context.Context, what string, limit time.Duration, cond func(context.Context) (bool, string)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, state := cond(ctx)
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %v (last: %s)", what, limit, state)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// converged says whether every node agrees on every disk's owner, epoch,
// root and replica count (the owner lists the fenced replicas its old
// owners publish, as every catalog does), and none counts a block
// under-replicated.
func (m *Mesh) converged(ctx context.Context) (bool, string) {
	if ok, why := m.allAlive(ctx); !ok {
		return false, why
	}
	for _, d := range Disks {
		infos := make([]api.DiskInfo, len(m.nodes))
		for i, n := range m.nodes {
			info, err := call(ctx, n, func(c *api.Client, ctx context.Context) (api.DiskInfo, error) { return c.DiskInfo(ctx, d.Name) })
			if err != nil {
				return false, err.Error()
			}
			if info.UnderReplicated != 0 {
				return false, fmt.Sprintf("%s: %s counts %d blocks under-replicated", d.Name, n.Name, info.UnderReplicated)
			}
			infos[i] = info
		}
		first := infos[0]
		for i, info := range infos {
			n := m.nodes[i]
			if info.Owner != first.Owner || info.Epoch != first.Epoch || info.Root != first.Root {
				return false, fmt.Sprintf("%s: %s and %s disagree: owner %s/%s epoch %d/%d root %s/%s", d.Name,
					m.nodes[0].Name, n.Name, short(first.Owner), short(info.Owner), first.Epoch, info.Epoch,
					short(first.Root), short(info.Root))
			}
			if info.ReplicaCount != first.ReplicaCount {
				return false, fmt.Sprintf("%s: %s and %s disagree: %d replicas/%d", d.Name, m.nodes[0].Name, n.Name,
					first.ReplicaCount, info.ReplicaCount)
			}
		}
	}
	return true, ""
}

// replicaNames lists the replicas of disk node n names.
func replicaNames(ctx context.Context, n *Node, disk string) ([]string, error) {
	reps, err := call(ctx, n, func(c *api.Client, ctx context.Context) ([]api.ReplicaInfo, error) { return c.ListReplicas(ctx, disk) })
	var names []string
	for _, r := range reps {
		names = append(names, r.Name)
	}
	return names, err
}

// short is the tail of a peer ID or CID, for messages.
func short(s string) string {
	if len(s) > 8 {
		return s[len(s)-8:]
	}
	return s
}

// commitAll commits every disk on its owner; a refusal (a fenced owner
// giving the disk up) is only logged: converged waits for the outcome.
func (m *Mesh) commitAll(ctx context.Context) {
	for _, d := range Disks {
		o := m.owner(ctx, d.Name)
		if o == nil {
			continue
		}
		if _, err := call(ctx, o, func(c *api.Client, ctx context.Context) (api.DiskInfo, error) { return c.Commit(ctx, d.Name) }); err != nil {
			m.logf("commit %s on %s: %v", d.Name, o.Name, err)
		}
	}
}

// readDisk exports ref from node n into the run directory and decodes its
// slots.
func (m *Mesh) readDisk(ctx context.Context, n *Node, ref api.Ref) (DiskRead, error) {
	where := fmt.Sprintf("%s on %s", ref, n.Name)
	path := filepath.Join(m.dir, "read", strings.NewReplacer("@", "_", "/", "_").Replace(ref.String())+"."+n.Name+".img")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return DiskRead{}, err
	}
	f, err := os.Create(path)
	if err != nil {
		return DiskRead{}, err
	}
	defer os.Remove(path)
	defer f.Close()
	ectx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := n.client.ExportFile(ectx, ref, f, nil); err != nil {
		return DiskRead{}, fmt.Errorf("export %s: %w", where, err)
	}
	slots, err := ReadSlots(f, m.diskSize/SlotSize)
	if err != nil {
		return DiskRead{}, fmt.Errorf("%s: %w", where, err)
	}
	return DiskRead{Where: where, Slots: slots}, nil
}

// close stops every daemon and removes the sites and tmpfs mounts.
func (m *Mesh) close() {
	m.crashMu.Lock()
	m.stopSupervising()
	m.crashMu.Unlock()
	m.restarts.Wait()
	for _, n := range m.nodes {
		n.stop()
	}
	for _, t := range m.tmpfs {
		if err := runTool("umount", t); err != nil {
			m.logf("%v", err)
		}
	}
	if m.sites != nil {
		m.sites.remove()
	}
}
