package csi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
)

// PluginName is the name the plugin reports: the driver name of a
// Kubernetes StorageClass (provisioner) and CSIDriver object.
const PluginName = "csi.weft.io"

// stopGrace is how long Serve lets calls in flight finish once its
// context is done before it cuts them off.
const stopGrace = 10 * time.Second

// Config is what a plugin serves and how.
type Config struct {
	// Volumes is the daemon the controller and node services ask.
	Volumes Volumes
	// NodeID is what NodeGetInfo answers; "" means the daemon's node ID.
	NodeID string
	// DisksDir is where the node service asks the daemon to mount the
	// node's disks (FUSE) so that it can put loop devices on them. It is
	// made if missing.
	DisksDir string
	// StateDir keeps the records of staged volumes (the loop devices bound
	// for them); "" means "state" next to DisksDir.
	StateDir string
	// Version is reported by GetPluginInfo.
	Version string
	Log     *slog.Logger
}

// Validate checks the config.
func (c Config) Validate() error {
	if c.Volumes == nil {
		return errors.New("csi: no daemon")
	}
	if c.DisksDir == "" {
		return errors.New("csi: no directory for the disks' mount")
	}
	return nil
}

func (c Config) stateDir() string {
	if c.StateDir != "" {
		return c.StateDir
	}
	return filepath.Join(filepath.Dir(filepath.Clean(c.DisksDir)), "state")
}

// Plugin is a CSI plugin: identity, controller and node services. Its
// methods are safe for concurrent use, as gRPC calls them.
type Plugin struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	csi.UnimplementedNodeServer

	cfg   Config
	log   *slog.Logger
	locks keyedMutex // one operation at a time per volume or snapshot name
	node  *nodeService
}

// New returns a plugin serving cfg.
func New(cfg Config) (*Plugin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Plugin{cfg: cfg, log: log}
	p.node = newNodeService(cfg, log)
	return p, nil
}

// Listen opens the endpoint: "unix:///abs/path" or "unix:/abs/path" (the
// forms Kubernetes sidecars pass); "unix://tmp/x" names a host, not a
// path, and is refused. A stale socket left by a plugin that died is
// removed first; anything else at the path (a file, a directory, a socket
// a live plugin answers on) is left alone and refused.
func Listen(endpoint string) (net.Listener, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "unix" {
		return nil, fmt.Errorf("endpoint %q: want unix:///PATH", endpoint)
	}
	if u.Host != "" {
		return nil, fmt.Errorf("endpoint %q: %q is a host, not a path: want unix:///PATH (three slashes)", endpoint, u.Host)
	}
	path := u.Path
	if path == "" {
		path = u.Opaque
	}
	if path == "" || path[0] != '/' {
		return nil, fmt.Errorf("endpoint %q: want an absolute path, unix:///PATH", endpoint)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", path, err)
	}
	return l, nil
}

// removeStaleSocket removes the unix socket at path if nothing answers on
// it; nothing there is fine.
func removeStaleSocket(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s is there and is not a socket (%s); not removing it", path, st.Mode().Type())
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return errors.New("a process serves on this socket already")
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}

// Serve answers CSI calls on l until ctx is done, then lets calls in
// flight finish (for stopGrace at most) and returns.
func (p *Plugin) Serve(ctx context.Context, l net.Listener) error {
	srv := grpc.NewServer(grpc.UnaryInterceptor(p.logCall))
	csi.RegisterIdentityServer(srv, p)
	csi.RegisterControllerServer(srv, p)
	csi.RegisterNodeServer(srv, p)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return fmt.Errorf("csi: serve: %w", err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(stopGrace):
		srv.Stop()
	}
	<-done
	return nil
}

// logCall logs every call at debug and every failure at info, with its
// gRPC code.
func (p *Plugin) logCall(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	if err != nil {
		p.log.Info("csi call failed", "method", info.FullMethod, "err", err, "took", time.Since(start))
	} else {
		p.log.Debug("csi call", "method", info.FullMethod, "took", time.Since(start))
	}
	return resp, err
}
