package node

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/weft-mesh/weft/node/nbd"
	"github.com/weft-mesh/weft/volume"
)

// nbdService runs a node's NBD servers: one on the configured TCP address
// (with STARTTLS when a certificate is configured) and one on HOME/nbd.sock
// for local clients.
type nbdService struct {
	addr, sock string
	tlsMode    string
	servers    []*nbd.Server
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

// NBDSocketPath returns the path of the NBD unix socket.
func (c Config) NBDSocketPath() string { return c.Path(NBDSocket) }

// startNBD listens and starts serving. The servers stop when ctx is
// cancelled or stop is called, whichever comes first.
func startNBD(ctx context.Context, cfg Config, vols *volume.Manager, mn *meshNode, metrics *nodeMetrics, logger *slog.Logger) (*nbdService, error) {
	log := logger.With("component", "nbd")
	ctx, cancel := context.WithCancel(ctx)
	svc := &nbdService{cancel: cancel}
	ok := false
	defer func() {
		if !ok {
			svc.stop()
		}
	}()
	base := nbd.DefaultConfig()
	base.Exports = nbdExports{vols: vols, mesh: mn}
	base.Observer = metrics.NBD()
	base.Logger = log

	type listener struct {
		ln  net.Listener
		cfg nbd.Config
	}
	var lns []listener
	if cfg.NBD != "" {
		tc := base
		cert, err := cfg.nbdCertificate()
		if err != nil {
			return nil, err
		}
		if cert != nil {
			tc.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
			tc.TLSRequired = cfg.NBDTLSRequired
			svc.tlsMode = "offered"
			if cfg.NBDTLSRequired {
				svc.tlsMode = "required"
			}
		}
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", cfg.NBD)
		if err != nil {
			return nil, fmt.Errorf("nbd: listen on %s: %w", cfg.NBD, err)
		}
		svc.addr = ln.Addr().String()
		lns = append(lns, listener{ln, tc})
	}
	sln, err := listenUnix(ctx, cfg, cfg.NBDSocketPath())
	if err != nil {
		for _, l := range lns {
			l.ln.Close()
		}
		return nil, fmt.Errorf("nbd: %w", err)
	}
	svc.sock = cfg.NBDSocketPath()
	lns = append(lns, listener{sln, base})

	for _, l := range lns {
		srv, err := nbd.NewServer(l.cfg)
		if err != nil {
			l.ln.Close()
			return nil, err
		}
		svc.servers = append(svc.servers, srv)
		svc.wg.Add(1)
		go func() {
			defer svc.wg.Done()
			if err := srv.Serve(ctx, l.ln); err != nil {
				log.Error("nbd server stopped", "addr", l.ln.Addr().String(), "err", err)
			}
		}()
	}
	log.Info("nbd serving", "addr", svc.addr, "socket", svc.sock, "tls", svc.tlsMode)
	ok = true
	return svc, nil
}

// homePath resolves a path given in the config relative to the home.
func homePath(cfg Config, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return cfg.Path(p)
}

// stop closes the listeners and connections and waits for the requests in
// flight.
func (s *nbdService) stop() {
	s.cancel()
	s.wg.Wait()
	if s.sock != "" {
		os.Remove(s.sock)
	}
}

func (s *nbdService) fillStatus(st *Status) {
	st.Goroutines = runtime.NumGoroutine()
	if s == nil {
		return
	}
	st.NBD, st.NBDSocket, st.NBDTLS = s.addr, s.sock, s.tlsMode
	for _, srv := range s.servers {
		st.NBDConns += srv.Conns()
	}
}
