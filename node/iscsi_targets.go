package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/weft-mesh/weft/node/iscsi"
	"github.com/weft-mesh/weft/node/nbd"
	"github.com/weft-mesh/weft/volume"
)

// IQNPrefix starts the names of a node's iSCSI targets: a disk is
// IQNPrefix+DISK, a replica IQNPrefix+DISK:REPLICA and a spacesuit
// version IQNPrefix+NAME:VERSION (":" cannot be in a weft name, so the
// mapping is one to one). iSCSI names are lower case (RFC 3722): disks
// whose names have upper-case letters or "_" have no iSCSI target.
const IQNPrefix = "iqn.2026-11.io.weft:"

// IQN returns the target name of a disk, replica or spacesuit ref
// ("DISK", "DISK@REPLICA", "NAME@VERSION"), and false when the ref has
// characters an iSCSI name cannot.
func IQN(ref string) (string, bool) {
	name := strings.Replace(ref, "@", ":", 1)
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == ':') {
			return "", false
		}
	}
	return IQNPrefix + name, true
}

// refOfIQN is IQN's inverse.
func refOfIQN(target string) (volume.Ref, bool) {
	rest, ok := strings.CutPrefix(strings.ToLower(target), IQNPrefix)
	if !ok {
		return volume.Ref{}, false
	}
	name := strings.Replace(rest, ":", "@", 1)
	if back, ok := IQN(name); !ok || back != IQNPrefix+rest {
		return volume.Ref{}, false
	}
	ref, err := volume.ParseRef(name)
	return ref, err == nil
}

// iscsiTargets serves a node's disks, replicas and spacesuits as iSCSI
// targets with the NBD door's rules (nbdExports.Open: the CIDR allow-list,
// read-only replicas and spacesuits, remote views), plus the disk's
// initiator allow-list and CHAP secrets. A replica keeps its disk's
// rules; spacesuits, images for everyone, have none.
type iscsiTargets struct {
	exp nbdExports
}

func (t iscsiTargets) List(ctx context.Context, initiator string, client netip.Addr) ([]string, error) {
	refs, err := t.exp.List(ctx, client)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range refs {
		name, ok := IQN(r)
		if !ok {
			continue
		}
		if !t.exp.spacesuit(ctx, r) {
			ref, _ := volume.ParseRef(r)
			if ok, err := t.exp.vols.InitiatorAllowed(ref.Disk, initiator); err != nil || !ok {
				continue
			}
		}
		out = append(out, name)
	}
	return out, nil
}

func (t iscsiTargets) Access(ctx context.Context, target, initiator string, client netip.Addr) (iscsi.CHAP, error) {
	ref, ok := refOfIQN(target)
	if !ok {
		return iscsi.CHAP{}, fmt.Errorf("target %q: not a weft target name: %w", target, iscsi.ErrNotFound)
	}
	if ref.Replica != "" && t.exp.spacesuit(ctx, ref.String()) {
		return iscsi.CHAP{}, nil
	}
	ok, err := t.exp.allowed(ref.Disk, client)
	switch {
	case errors.Is(err, volume.ErrNotFound):
		return iscsi.CHAP{}, fmt.Errorf("target %q: %w", target, iscsi.ErrNotFound)
	case err != nil:
		return iscsi.CHAP{}, err
	case !ok:
		return iscsi.CHAP{}, fmt.Errorf("target %q: client %s not in the disk's allow-list: %w", target, client, iscsi.ErrNotAllowed)
	}
	if ok, err := t.exp.vols.InitiatorAllowed(ref.Disk, initiator); err != nil || !ok {
		return iscsi.CHAP{}, fmt.Errorf("target %q: initiator %q not in the disk's initiator list: %w", target, initiator, iscsi.ErrNotAllowed)
	}
	c, err := t.exp.vols.DiskCHAP(ref.Disk)
	switch {
	case errors.Is(err, volume.ErrNoCHAPSecret):
		// The disk's previous owner required CHAP and its secrets stayed
		// there: fail closed until an operator sets some here.
		return iscsi.CHAP{}, fmt.Errorf("target %q: %w: %w", target, err, iscsi.ErrNotAllowed)
	case err != nil || c == nil:
		return iscsi.CHAP{}, err
	}
	return iscsi.CHAP{User: c.User, Secret: c.Secret, TargetUser: c.TargetUser, TargetSecret: c.TargetSecret}, nil
}

func (t iscsiTargets) Open(ctx context.Context, target, initiator string, client netip.Addr) (iscsi.Disk, error) {
	if _, err := t.Access(ctx, target, initiator, client); err != nil {
		return nil, err
	}
	ref, _ := refOfIQN(target)
	e, err := t.exp.Open(ctx, ref.String(), client)
	switch {
	case errors.Is(err, nbd.ErrUnknown):
		return nil, fmt.Errorf("%w: %w", iscsi.ErrNotFound, err)
	case errors.Is(err, nbd.ErrPolicy):
		return nil, fmt.Errorf("%w: %w", iscsi.ErrNotAllowed, err)
	case err != nil:
		return nil, err
	}
	return e, nil
}
