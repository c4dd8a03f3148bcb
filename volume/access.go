package volume

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/weft-mesh/weft/internal/accesslist"
)

// ErrNoCHAPSecret is matched (errors.Is) by DiskCHAP's error for a disk
// whose iSCSI logins need CHAP (its rules came from a previous owner that
// had secrets) while this node has none: every login must be refused
// until an operator sets secrets here (SetCHAP).
var ErrNoCHAPSecret = errors.New("iscsi chap required but no secret set on this node")

// Access is who may open a disk, without its secrets: what travels with the
// disk in the mesh's catalog when another node becomes its owner.
type Access struct {
	// Allow and Initiators are the disk's lists in accesslist's canonical
	// form; nil allows any client.
	Allow, Initiators []string
	// CHAP is set when the disk's iSCSI logins need CHAP: secrets are set
	// here, or a previous owner had some and none is set here yet.
	CHAP bool
}

// access returns what travels of the disk's rules.
func (rec *diskRecord) access() Access {
	return Access{Allow: slices.Clone(rec.Allow), Initiators: slices.Clone(rec.Initiators), CHAP: rec.CHAP != nil || rec.CHAPRequired}
}

// setAccess gives the disk the rules a were carried with; it keeps its
// CHAP secrets when CHAP stays on, and drops them when the owner the rules
// come from turned CHAP off.
func (rec *diskRecord) setAccess(a Access) {
	rec.Allow, rec.Initiators = slices.Clone(a.Allow), slices.Clone(a.Initiators)
	if !a.CHAP {
		rec.CHAP = nil
	}
	rec.CHAPRequired = a.CHAP && rec.CHAP == nil
}

// Access returns the rules of the disk d describes.
func (d DiskInfo) Access() Access {
	return Access{Allow: d.Allow, Initiators: d.Initiators, CHAP: d.CHAPUser != "" || d.CHAPMissing}
}

// checkAccess refuses rules not in accesslist's canonical form.
func checkAccess(a Access) error {
	if err := accesslist.CheckCanonical(a.Allow, a.Initiators); err != nil {
		return fmt.Errorf("access: %w: %w", err, ErrInvalid)
	}
	return nil
}

// CarryAccess gives a disk held here the rules carried with it from its
// previous owner (a disk adopted over a head this node still had), in one
// save of the catalog, and tells the OnAccessChange watchers.
func (m *Manager) CarryAccess(ctx context.Context, disk string, a Access) (DiskInfo, error) {
	if err := checkAccess(a); err != nil {
		return DiskInfo{}, err
	}
	return m.changeDisk(ctx, disk, true, func(rec *diskRecord) { rec.setAccess(a) })
}

// AccessChange says what changed of the rules of a disk held here.
type AccessChange struct {
	Disk string
	// CHAP is set when its CHAP secrets changed (or were dropped): a
	// session logged in with the old ones cannot be checked against the
	// new.
	CHAP bool
	// Removed is set when the disk's head was removed here (disk rm, or
	// given up to another owner): it is served here no more.
	Removed bool
}

// OnAccessChange registers fn, called after every change of a disk's
// rules (SetACL, SetCHAP, CarryAccess) and every removal of a disk's head,
// so that a door can end the sessions the new rules refuse. fn runs on the
// goroutine of the change, without the manager's locks held (it may call
// the manager), and should return quickly.
func (m *Manager) OnAccessChange(fn func(AccessChange)) {
	m.watchMu.Lock()
	defer m.watchMu.Unlock()
	m.accessWatchers = append(m.accessWatchers, fn)
}

// accessChanged calls the OnAccessChange watchers.
func (m *Manager) accessChanged(c AccessChange) {
	m.watchMu.Lock()
	ws := slices.Clone(m.accessWatchers)
	m.watchMu.Unlock()
	for _, fn := range ws {
		fn(c)
	}
}
