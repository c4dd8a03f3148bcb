package torture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/weft-mesh/weft/api"
)

// Config is one torture run.
type Config struct {
	Bin          string        // the weft binary
	Dir          string        // run directory: homes, logs, images read back
	Duration     time.Duration // how long the writers and the nemesis run
	Seed         uint64
	Sites        int
	NodesPerSite int
	DiskSize     int64 // bytes, a multiple of every disk's block size
	// Namespaces puts each site in a network namespace and each home on
	// a tmpfs (root only); without it the cut, slow and fill faults are
	// skipped.
	Namespaces bool
	// HealLimit bounds the wait for the healed mesh to converge.
	HealLimit time.Duration
	// Progress gets the log of the nemesis and the run as it goes; nil
	// for none.
	Progress io.Writer
}

// DefaultConfig is the 60-second run of make test: 3 sites of 2 nodes,
// 16 MiB disks.
func DefaultConfig() Config {
	return Config{Duration: time.Minute, Seed: 1, Sites: 3, NodesPerSite: 2, DiskSize: 16 << 20, HealLimit: 2 * time.Minute}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.Bin == "" || c.Dir == "":
		return fmt.Errorf("torture: a weft binary and a run directory are needed")
	case c.Sites < 3:
		// R=3 disks need three sites to spread their copies.
		return fmt.Errorf("torture: %d sites, want at least 3", c.Sites)
	case c.NodesPerSite < 1:
		return fmt.Errorf("torture: %d nodes per site, want at least 1", c.NodesPerSite)
	case c.DiskSize <= 0 || c.DiskSize%(64<<10) != 0:
		return fmt.Errorf("torture: disk size %d, want a positive multiple of 64 KiB", c.DiskSize)
	case c.Duration <= 0 || c.HealLimit <= 0:
		return fmt.Errorf("torture: duration and heal limit must be positive")
	}
	return nil
}

// Report is the outcome of a run.
type Report struct {
	Result
	Seed    uint64
	Faults  map[string]int
	Skipped []string // fault kinds this run could not inject, and why
	// Crashes are the daemons that exited without the nemesis killing
	// them, each with its exit status and the first panic line of its
	// output: bugs of weft, which fail the run.
	Crashes []string
}

// FaultCount is the total of Faults.
func (r Report) FaultCount() int {
	n := 0
	for _, c := range r.Faults {
		n += c
	}
	return n
}

// Line is the one-line summary of the run, in the form the issue that
// asked for torture gave it. A write only an unreadable fenced replica
// kept counts as lost there; FencedLine says how many replicas those were.
func (r Report) Line() string {
	return fmt.Sprintf("acknowledged writes: %d, lost: %d, corrupt reads: %d, faults: %d",
		r.Acked, r.Lost, r.Corrupt, r.FaultCount())
}

// FencedLine says what the fenced replicas kept and how many could not be
// read.
func (r Report) FencedLine() string {
	return fmt.Sprintf("fenced replicas: %d slots kept only in them, %d unreadable", r.KeptFenced, r.Unreadable)
}

// FaultLine lists the faults by kind.
func (r Report) FaultLine() string {
	kinds := make([]string, 0, len(r.Faults))
	for k := range r.Faults {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s %d", k, r.Faults[k]))
	}
	return fmt.Sprintf("faults by kind: %s; crashes: %d", strings.Join(parts, ", "), len(r.Crashes))
}

// Failed says whether the run found an acknowledged write lost, a corrupt
// read, an unreadable fenced replica or a daemon that exited on its own.
func (r Report) Failed() bool {
	return r.Lost > 0 || r.Corrupt > 0 || r.Unreadable > 0 || len(r.Crashes) > 0
}

// writersPerDisk: each writes its own slots of the disk.
const writersPerDisk = 1

// How often operatorLoop commits the async disks and runs weft gc.
const (
	commitEvery = 5 * time.Second
	gcEvery     = 30 * time.Second
)

// Run sets up the mesh, runs the writers and the nemesis for
// cfg.Duration, heals every fault, waits for the mesh to converge, reads
// every disk from every node and checks it against the log. An error
// means the run itself broke (the mesh did not converge, a disk could
// not be read); the Report then still checks whatever could be read.
// Lost writes, corrupt reads and daemons that exited on their own are in
// the Report.
func Run(ctx context.Context, cfg Config) (rep Report, err error) {
	rep = Report{Seed: cfg.Seed, Faults: make(map[string]int)}
	if err := cfg.Validate(); err != nil {
		return rep, err
	}
	if err := CheckPython(); err != nil {
		return rep, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return rep, err
	}
	runLog, err := os.Create(filepath.Join(cfg.Dir, "torture.log"))
	if err != nil {
		return rep, err
	}
	defer runLog.Close()
	writesLog, err := os.Create(filepath.Join(cfg.Dir, "writes.log"))
	if err != nil {
		return rep, err
	}
	defer writesLog.Close()
	start := time.Now()
	var logMu sync.Mutex
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		line := fmt.Sprintf("%8.3fs %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
		runLog.WriteString(line)
		if cfg.Progress != nil {
			io.WriteString(cfg.Progress, line)
		}
	}
	logf("seed %d, %d sites x %d nodes, %d disks of %d MiB, %v", cfg.Seed, cfg.Sites, cfg.NodesPerSite, len(Disks), cfg.DiskSize>>20, cfg.Duration)

	kinds := []string{faultKill, faultPause, faultTake, faultCorrupt}
	const longCutRun = 5 * time.Minute // shorter runs have no room for a long cut
	if cfg.Namespaces {
		kinds = append(kinds, faultCut, faultSlow, faultFill)
		if cfg.Duration >= longCutRun {
			kinds = append(kinds, faultLongCut)
		}
	} else {
		rep.Skipped = append(rep.Skipped, "cut, slow and fill (they need root: network namespaces, tc, tmpfs homes)")
		logf("not root: loopback addresses; cut, slow and fill are skipped")
	}

	mesh, err := newMesh(ctx, cfg, logf)
	if err != nil {
		return rep, fmt.Errorf("set up the mesh: %w", err)
	}
	defer mesh.close()
	defer func() { rep.Crashes = mesh.crashFindings() }()
	script := filepath.Join(cfg.Dir, "writer.py")
	if err := os.WriteFile(script, writerScript, 0o644); err != nil {
		return rep, err
	}

	wlog := NewLog(writesLog)
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x746f7274757265))
	nem := &nemesis{rng: rng, mesh: mesh, kinds: kinds, logf: logf, counts: rep.Faults, takenFrom: map[*Node]bool{}}
	runCtx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	var wg sync.WaitGroup
	for d := range Disks {
		for k := range writersPerDisk {
			w := &writer{disk: d, id: k, writers: writersPerDisk, seed: cfg.Seed*1000 + uint64(d*10+k), mesh: mesh, log: wlog, script: script}
			wg.Go(func() { w.run(runCtx) })
		}
	}
	wg.Go(func() { operatorLoop(runCtx, mesh, logf) })
	logf("writers started; nemesis starts")
	nem.run(runCtx)
	wg.Wait()
	logf("run over: healing %d faults in force", len(nem.active))
	nem.healAll()

	// When the mesh does not converge or a disk cannot be read the run
	// broke, but what could be read is still checked: its figures are
	// the run's.
	broke := heal(ctx, mesh, cfg.HealLimit, logf)
	var disks []DiskCheck
	for i, d := range Disks {
		dc, err := readBack(ctx, mesh, i, d)
		if err != nil {
			logf("read back: %v", err)
			broke = errors.Join(broke, err)
		}
		dc.Writes = wlog.Writes(i)
		disks = append(disks, dc)
	}
	rep.Result = Check(disks)
	if broke != nil {
		logf("checked what could be read (the run broke): %s", rep.Line())
	} else {
		logf("checked: %s; %d slots kept only in fenced replicas", rep.Line(), rep.KeptFenced)
	}
	for _, p := range rep.Problems {
		logf("problem: %s", p)
	}
	return rep, broke
}

// operatorLoop does what an operator's cron would: it commits the async
// disks on their owners every commitEvery, so that takes meet both
// committed and uncommitted writes (the daemons' own commit interval is
// 30 s), and runs weft gc on every running node every gcEvery, or the
// garbage of the commits fills the homes within minutes.
func operatorLoop(ctx context.Context, m *Mesh, logf func(string, ...any)) {
	lastGC := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(commitEvery):
		}
		for _, d := range Disks {
			if d.Sync {
				continue
			}
			if o := m.owner(ctx, d.Name); o != nil && o.State() == nodeUp {
				call(ctx, o, func(c *api.Client, ctx context.Context) (api.DiskInfo, error) { return c.Commit(ctx, d.Name) })
			}
		}
		if time.Since(lastGC) < gcEvery {
			continue
		}
		lastGC = time.Now()
		m.gcAll(ctx, logf)
	}
}

// gcAll runs weft gc on every running node.
func (m *Mesh) gcAll(ctx context.Context, logf func(string, ...any)) {
	for _, n := range m.nodes {
		if n.State() != nodeUp {
			continue
		}
		if st, err := callWithin(ctx, n, slowCallTimeout, (*api.Client).GC); err != nil {
			logf("gc on %s: %v", n.Name, err)
		} else {
			logf("gc on %s: %d roots, swept %d blocks (%d MiB)", n.Name, st.Roots, st.SweptBlocks, st.SweptBytes>>20)
		}
	}
}

// heal waits until the mesh converges after every fault was healed,
// committing every disk on its owner meanwhile.
func heal(ctx context.Context, m *Mesh, limit time.Duration, logf func(string, ...any)) error {
	logf("waiting for the mesh to converge (at most %v)", limit)
	m.gcAll(ctx, logf)
	deadline := time.Now().Add(limit)
	var lastCommit, lastNote time.Time
	err := m.waitFor(ctx, "the healed mesh converges", limit, func(ctx context.Context) (bool, string) {
		if time.Since(lastCommit) > 2*time.Second && time.Now().Before(deadline) {
			m.commitAll(ctx)
			lastCommit = time.Now()
		}
		ok, state := m.converged(ctx)
		if !ok && time.Since(lastNote) > 5*time.Second {
			logf("not yet: %s", state)
			lastNote = time.Now()
		}
		return ok, state
	})
	if err != nil {
		return err
	}
	logf("converged")
	return nil
}

// readBack reads disk d's head from every node, and every fenced replica
// its owner lists from the owner, which restores them (converged made sure
// every node lists as many). It reads all it can: the DiskCheck holds what
// was read, the error says what could not be.
func readBack(ctx context.Context, m *Mesh, i int, d DiskSpec) (DiskCheck, error) {
	dc := DiskCheck{Disk: i}
	var errs []error
	for _, n := range m.nodes {
		r, err := m.readDisk(ctx, n, api.Ref{Disk: d.Name})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		dc.Heads = append(dc.Heads, r)
	}
	o := m.owner(ctx, d.Name)
	if o == nil {
		return dc, errors.Join(append(errs, fmt.Errorf("%s: no owner", d.Name))...)
	}
	names, err := replicaNames(ctx, o, d.Name)
	if err != nil {
		return dc, errors.Join(append(errs, err)...)
	}
	for _, name := range names {
		if !strings.HasPrefix(name, "fenced-") {
			continue
		}
		fr, err := m.readDisk(ctx, o, api.Ref{Disk: d.Name, Replica: name})
		if err != nil {
			// Not the run breaking: weft lost blocks of a fenced
			// replica; Check counts it, and the writes only it kept
			// count as lost.
			dc.Unreadable = append(dc.Unreadable, err.Error())
			continue
		}
		dc.Fenced = append(dc.Fenced, fr)
	}
	return dc, errors.Join(errs...)
}
