package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/cluster"
	"github.com/weft-mesh/weft/mesh"
	"github.com/weft-mesh/weft/mesh/catalog"
)

// shutdownGrace is how long Run lets requests in flight finish after its
// context is cancelled before it cuts their connections.
const shutdownGrace = 10 * time.Second

// scrapeTimeout bounds the disk listing a metrics scrape makes.
const scrapeTimeout = 10 * time.Second

// maxSocketPath is the longest unix socket path Linux accepts.
const maxSocketPath = 107

// Run runs a node until ctx is cancelled: it locks the home, opens the block
// store and the volume manager, and serves the local API on the home's
// socket. On cancellation it stops serving, commits dirty disk heads,
// closes the stores and removes the socket, and returns nil. It returns an
// error if the node cannot start (another daemon owns the home, the home is
// not initialized, ...) or if serving fails.
func Run(ctx context.Context, cfg Config) (err error) {
	if err := cfg.Validate(); err != nil {
		return err
	}
	id, err := LoadIdentity(cfg.Path(IdentityFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("weft home %s is %w (create it with: weft init --home %s)", cfg.Home, ErrNotInitialized, cfg.Home)
		}
		return err
	}
	// Every logger names the node once, here, and its component once:
	// the packages that tag their own component (blockstore, mesh,
	// exchange) get base as it is, the others a child tagged for them.
	// slog's With appends, so a logger tagged twice prints the key twice.
	base := cfg.Logger.With("node", id.ID())
	log := base.With("component", "node")
	lock, err := lockHome(cfg)
	if err != nil {
		return err
	}
	defer lock.unlock()

	bopts := blockstore.DefaultOptions()
	bopts.Logger = base
	store, err := blockstore.Open(cfg.Path(BlocksDir), bopts)
	if err != nil {
		return fmt.Errorf("open block store: %w", err)
	}
	defer func() {
		if cerr := store.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close block store: %w", cerr)
		}
	}()

	ccfg := CoreConfig{
		Home: cfg.Home, Site: cfg.Site, Join: cfg.Join, Store: store, Logger: base,
		CommitInterval: cfg.CommitInterval, BlockCacheBytes: cfg.BlockCacheBytes,
		HealInterval: cfg.HealInterval, HealBandwidth: cfg.HealBandwidth, HealConcurrency: cfg.HealConcurrency,
		TransferBandwidth: cfg.TransferBandwidth, ReserveBytes: cfg.ReserveBytes, PeerBlockGrace: cfg.PeerBlockGrace,
	}
	if len(cfg.Listen) > 0 {
		m, cat, err := startMesh(ctx, cfg, id, store, base)
		if err != nil {
			return err
		}
		if cfg.Listen, err = recordListenPorts(cfg, m.ListenAddrs(), log); err != nil {
			m.Close()
			return err
		}
		ccfg.Net, ccfg.Catalog = m, cat
	}
	core, err := NewCore(ctx, ccfg)
	if err != nil {
		return err
	}
	defer func() { // after the doors closed and the background work stopped
		if cerr := core.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	vols, mn := core.Vols, core.mesh
	cctx, ccancel := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { defer close(ran); core.Run(cctx) }()
	defer func() { ccancel(); <-ran }() // before the volumes close

	src := metricsSources{Store: store.Stats, Space: func() SpaceStatus { return spaceStatus(cfg) }}
	if mn != nil {
		src.Heal, src.Members, src.Transfers = mn.healer.Status, mn.peers, mn.transfers.List
		src.UnderReplicated = func() (int64, error) {
			sctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
			defer cancel()
			disks, _, err := listDisks(sctx, vols, mn)
			return totalUnderReplicated(disks), err
		}
	}
	metrics := newNodeMetrics(src)

	nbdSvc, err := startNBD(ctx, cfg, vols, mn, metrics, base)
	if err != nil {
		return err
	}
	defer nbdSvc.stop() // before the volumes close

	iscsiSvc, err := startISCSI(ctx, cfg, vols, mn, metrics, base)
	if err != nil {
		return err
	}
	defer iscsiSvc.stop() // before the volumes close

	// A change of a disk's rules, or its removal here, ends the sessions
	// the rules refuse from then on.
	vols.OnAccessChange(endRefused(nbdSvc, iscsiSvc, nbdExports{vols: vols, mesh: mn}, log))

	mounts := newMountTable(vols, mn, base.With("component", "fuse"))
	defer mounts.closeAll() // before the volumes close

	// Listen last, so that a socket that answers means a node that is ready.
	ln, err := listenSocket(ctx, cfg)
	if err != nil {
		return err
	}
	defer os.Remove(cfg.SocketPath())
	defer ln.Close()

	srv := &server{cfg: cfg, id: id, store: store, vols: vols, log: log, started: time.Now(), nbd: nbdSvc, iscsi: iscsiSvc, mesh: mn}
	srv.mounts = mounts
	srv.doors = []diskDoor{nbdSvc, iscsiSvc, mounts}
	hs := &http.Server{
		Handler:           srv.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext:       withFileConn,
	}
	// Unmount as shutdown begins: it ends the waits of foreground mounts,
	// which Shutdown waits for.
	hs.RegisterOnShutdown(mounts.closeAll)
	if cfg.HTTP != "" {
		web, err := startHTTP(ctx, cfg, srv, metrics.Handler())
		if err != nil {
			return err
		}
		defer web.stop()
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	log.Info("daemon started", "home", cfg.Home, "socket", cfg.SocketPath(), "site", cfg.Site, "pid", os.Getpid())

	select {
	case err := <-served:
		return fmt.Errorf("serve local API: %w", err)
	case <-ctx.Done():
	}
	log.Info("daemon stopping")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("requests cut at shutdown", "err", err)
		hs.Close()
	}
	<-served
	return nil
}

// startMesh starts the libp2p mesh of a node whose config has listen
// addresses, with the catalog saved in the home as its gossiped state.
// log names the node only: each part tags its own component.
func startMesh(ctx context.Context, cfg Config, id Identity, store blockstore.Store, log *slog.Logger) (*mesh.Mesh, *catalog.Catalog, error) {
	secret, err := loadClusterSecret(cfg.Path(ClusterSecretFile))
	if err != nil {
		return nil, nil, err
	}
	self, err := id.PeerID()
	if err != nil {
		return nil, nil, err
	}
	cat, err := catalog.Load(cfg.Path(MeshDir+"/"+catalogFile), self.String())
	if err != nil {
		return nil, nil, err
	}
	mcfg := mesh.DefaultConfig()
	mcfg.Key = id.Key
	mcfg.Listen = cfg.Listen
	mcfg.Secret = secret
	mcfg.Site = cfg.Site
	mcfg.Dir = cfg.Path(MeshDir)
	mcfg.Detector = cfg.Detector()
	mcfg.Logger = log
	mcfg.State = cluster.GossipState(cat, log.With("component", "mesh"))
	mcfg.Capacity = func() (int64, int64) {
		st := store.Stats()
		free, err := freeBytes(cfg.Path(BlocksDir))
		if err != nil {
			log.Warn("cannot read the block store's free space", "err", err)
		}
		return st.DiskBytes, free
	}
	m, err := mesh.New(ctx, mcfg)
	if err != nil {
		return nil, nil, fmt.Errorf("start mesh (listen addresses in %s): %w", cfg.Path(ConfigFile), err)
	}
	return m, cat, nil
}

// listenSocket listens on the home's unix socket with mode 0600. A socket
// file left by a dead daemon is removed; a live one is an error. Its
// connections can receive files (fdpass.go).
func listenSocket(ctx context.Context, cfg Config) (net.Listener, error) {
	ln, err := listenUnix(ctx, cfg, cfg.SocketPath())
	if err != nil {
		return nil, err
	}
	return fileListener{ln.(*net.UnixListener)}, nil
}

// listenUnix listens on a unix socket in the home with mode 0600, as
// listenSocket does.
func listenUnix(ctx context.Context, cfg Config, path string) (net.Listener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("socket path %s is %d bytes, longer than the %d the system allows: use a shorter --home", path, len(path), maxSocketPath)
	}
	if _, err := os.Lstat(path); err == nil {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		var d net.Dialer
		c, err := d.DialContext(dctx, "unix", path)
		cancel()
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("weft home %s: another daemon answers on %s", cfg.Home, path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// The home is 0700, so nobody else can reach the socket before this.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return ln, nil
}
