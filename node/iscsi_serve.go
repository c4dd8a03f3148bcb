package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/weft-mesh/weft/node/iscsi"
	"github.com/weft-mesh/weft/volume"
)

// iscsiService runs a node's iSCSI target on the configured address. The
// zero value (no address configured) serves nothing.
type iscsiService struct {
	addr   string
	srv    *iscsi.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startISCSI listens and starts serving, when the config names an
// address. The server stops when ctx is cancelled or stop is called.
func startISCSI(ctx context.Context, cfg Config, vols *volume.Manager, mn *meshNode, metrics *nodeMetrics, logger *slog.Logger) (*iscsiService, error) {
	svc := &iscsiService{cancel: func() {}}
	if cfg.ISCSI == "" {
		return svc, nil
	}
	log := logger.With("component", "iscsi")
	ic := iscsi.DefaultConfig()
	ic.Targets = iscsiTargets{exp: nbdExports{vols: vols, mesh: mn}}
	ic.Logger = log
	ic.Observer = metrics.ISCSI()
	srv, err := iscsi.NewServer(ic)
	if err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.ISCSI)
	if err != nil {
		return nil, fmt.Errorf("iscsi: listen on %s: %w", cfg.ISCSI, err)
	}
	ctx, svc.cancel = context.WithCancel(ctx)
	svc.addr, svc.srv = ln.Addr().String(), srv
	svc.wg.Add(1)
	go func() {
		defer svc.wg.Done()
		if err := srv.Serve(ctx, ln); err != nil {
			log.Error("iscsi server stopped", "addr", svc.addr, "err", err)
		}
	}()
	log.Info("iscsi serving", "addr", svc.addr)
	return svc, nil
}

// stop closes the listener and sessions and waits for their commands.
func (s *iscsiService) stop() {
	s.cancel()
	s.wg.Wait()
}

func (s *iscsiService) fillStatus(st *Status) {
	if s == nil || s.srv == nil {
		return
	}
	st.ISCSI = s.addr
	st.ISCSISessions = len(s.srv.Sessions())
}

// diskUsers names the iSCSI sessions logged in to the disk's target (its
// replicas' targets are separate, and outlive it).
func (s *iscsiService) diskUsers(disk string) []string {
	if s == nil || s.srv == nil {
		return nil
	}
	var out []string
	for _, ses := range s.srv.Sessions() {
		if ref, ok := refOfIQN(ses.Target); ok && ref.Replica == "" && ref.Disk == disk {
			out = append(out, fmt.Sprintf("iSCSI initiator %s from %s", ses.Initiator, ses.Client))
		}
	}
	return out
}

// disconnectIf ends the sessions for which end returns true and returns
// how many it ended.
func (s *iscsiService) disconnectIf(end func(iscsi.SessionInfo) bool) int {
	if s == nil || s.srv == nil {
		return 0
	}
	return s.srv.DisconnectIf(end)
}
