package node

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/weft-mesh/weft/node/iscsi"
	"github.com/weft-mesh/weft/volume"
)

// accessTimeout bounds the checks of one change of a disk's rules against
// its open sessions (each a lookup in the volumes, or in the catalog for a
// spacesuit).
const accessTimeout = 10 * time.Second

// endRefused ends the NBD connections and iSCSI sessions that the rules of
// the disk c names, as they are now, refuse: after an acl change, those of
// clients no longer allowed; after a CHAP change, every iSCSI session of
// the disk (a session proved the old secret, not the new); after the head
// was removed here (disk rm --force, or given up to a new owner), every
// session of the head, and those of its replicas from the network. It is
// the volumes' OnAccessChange watcher: it runs before the change's command
// answers.
func endRefused(nbdSvc *nbdService, iscsiSvc *iscsiService, exp nbdExports, log *slog.Logger) func(volume.AccessChange) {
	targets := iscsiTargets{exp: exp}
	return func(c volume.AccessChange) {
		ctx, cancel := context.WithTimeout(context.Background(), accessTimeout)
		defer cancel()
		n := 0
		for _, srv := range nbdSvc.servers {
			n += srv.DisconnectIf(func(export string, client netip.Addr) bool { return exp.refuses(ctx, c, export, client) })
		}
		i := iscsiSvc.disconnectIf(func(ses iscsi.SessionInfo) bool { return targets.refuses(ctx, c, ses) })
		if n+i > 0 {
			log.Info("sessions the disk's rules refuse now closed", "disk", c.Disk, "removed", c.Removed, "chap", c.CHAP,
				"nbd_closed", n, "iscsi_closed", i)
		}
	}
}

// refuses reports whether an NBD connection of client to export, open
// already, is one Open would refuse after the change c: the head of a
// disk removed here, or a client the disk's rules no longer allow.
func (e nbdExports) refuses(ctx context.Context, c volume.AccessChange, export string, client netip.Addr) bool {
	ref, err := volume.ParseRef(export)
	if err != nil || ref.Disk != c.Disk || ref.Replica != "" && e.spacesuit(ctx, export) {
		return false
	}
	if c.Removed && ref.Replica == "" {
		return true
	}
	ok, err := e.allowed(ref.Disk, client)
	// A removed disk's replicas are served on the local socket only
	// (allowed says yes to it, unasked).
	return err != nil || !ok
}

// refuses reports whether an iSCSI session, logged in already, is one a
// login would not get after the change c, or one whose CHAP proof is
// stale.
func (t iscsiTargets) refuses(ctx context.Context, c volume.AccessChange, ses iscsi.SessionInfo) bool {
	ref, ok := refOfIQN(ses.Target)
	if ses.Discovery || !ok || ref.Disk != c.Disk || ref.Replica != "" && t.exp.spacesuit(ctx, ref.String()) {
		return false
	}
	if c.CHAP || c.Removed && ref.Replica == "" {
		return true
	}
	_, err := t.Access(ctx, ses.Target, ses.Initiator, ses.Client)
	return err != nil && !errors.Is(err, context.DeadlineExceeded)
}
