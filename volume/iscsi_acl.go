package volume

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"unicode"
)

// CHAP is a disk's iSCSI CHAP secrets: the initiator proves User and
// Secret; with TargetUser and TargetSecret the target proves itself too
// (mutual CHAP). They are stored in the catalog, a 0600 file.
type CHAP struct {
	User         string `json:"user"`
	Secret       string `json:"secret"`
	TargetUser   string `json:"target_user,omitempty"`
	TargetSecret string `json:"target_secret,omitempty"`
}

func (c *CHAP) user() string {
	if c == nil {
		return ""
	}
	return c.User
}

func (c *CHAP) targetUser() string {
	if c == nil {
		return ""
	}
	return c.TargetUser
}

// CHAP secret lengths: RFC 7143 section 12.1.3 asks for at least 12 bytes
// (96 bits); RFC 1994 allows long ones, iSCSI initiators take up to 255.
const (
	MinCHAPSecret = 12
	MaxCHAPSecret = 255
	maxCHAPUser   = 255
)

func checkCHAPPart(what, user, secret string) error {
	if user == "" || len(user) > maxCHAPUser || strings.ContainsFunc(user, func(r rune) bool { return !unicode.IsPrint(r) || r == ',' }) {
		return fmt.Errorf("chap %s name %q: want 1 to %d printable characters: %w", what, user, maxCHAPUser, ErrInvalid)
	}
	if len(secret) < MinCHAPSecret || len(secret) > MaxCHAPSecret {
		return fmt.Errorf("chap %s secret of %d bytes: want %d to %d (RFC 7143): %w", what, len(secret), MinCHAPSecret, MaxCHAPSecret, ErrInvalid)
	}
	return nil
}

// SetCHAP sets the CHAP secrets of a disk's iSCSI targets; nil turns CHAP
// off.
func (m *Manager) SetCHAP(ctx context.Context, disk string, c *CHAP) (DiskInfo, error) {
	if c != nil {
		if err := checkCHAPPart("initiator", c.User, c.Secret); err != nil {
			return DiskInfo{}, err
		}
		if c.TargetUser != "" || c.TargetSecret != "" {
			if err := checkCHAPPart("target", c.TargetUser, c.TargetSecret); err != nil {
				return DiskInfo{}, err
			}
			if c.TargetSecret == c.Secret {
				return DiskInfo{}, fmt.Errorf("chap: the target secret must differ from the initiator's (RFC 7143 section 12.1.3): %w", ErrInvalid)
			}
		}
		cp := *c
		c = &cp
	}
	return m.changeDisk(ctx, disk, true, func(rec *diskRecord) { rec.CHAP, rec.CHAPRequired = c, false })
}

// DiskCHAP returns a disk's CHAP secrets, nil when CHAP is off. For a disk
// whose logins need CHAP while no secret is set here (its previous owner's
// stayed there) the error matches ErrNoCHAPSecret.
func (m *Manager) DiskCHAP(disk string) (*CHAP, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.cat.Disks[disk]
	if !ok {
		return nil, fmt.Errorf("disk %q: %w", disk, ErrNotFound)
	}
	if rec.CHAP == nil && rec.CHAPRequired {
		return nil, fmt.Errorf("disk %q: %w: set one with weft disk chap", disk, ErrNoCHAPSecret)
	}
	if rec.CHAP == nil {
		return nil, nil
	}
	c := *rec.CHAP
	return &c, nil
}

// InitiatorAllowed reports whether an iSCSI initiator may log in to the
// disk's targets.
func (m *Manager) InitiatorAllowed(disk, initiator string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.cat.Disks[disk]
	if !ok {
		return false, fmt.Errorf("disk %q: %w", disk, ErrNotFound)
	}
	if len(rec.Initiators) == 0 {
		return true, nil
	}
	return slices.Contains(rec.Initiators, strings.ToLower(initiator)), nil
}

// changeDisk applies change to a disk's rules and saves the catalog,
// rolling back if it cannot; then it tells the OnAccessChange watchers
// (chap: the CHAP secrets may have changed).
func (m *Manager) changeDisk(ctx context.Context, disk string, chap bool, change func(*diskRecord)) (DiskInfo, error) {
	m.mu.Lock()
	rec, ok := m.cat.Disks[disk]
	if !ok {
		m.mu.Unlock()
		return DiskInfo{}, fmt.Errorf("disk %q: %w", disk, ErrNotFound)
	}
	snapshot := m.cat.clone()
	change(rec)
	err := m.saveCatalog()
	if err != nil {
		m.cat = snapshot
	}
	m.mu.Unlock()
	if err != nil {
		return DiskInfo{}, err
	}
	m.accessChanged(AccessChange{Disk: disk, CHAP: chap})
	return m.DiskInfo(ctx, disk)
}
