package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/weft-mesh/weft/internal/errkind"
	"github.com/weft-mesh/weft/volume"
)

// ErrHomeExists is wrapped by Init when the home already holds a config.
var ErrHomeExists = errors.New("already initialized")

// InitOptions say what Init may replace in an existing home and which mesh
// the node joins.
type InitOptions struct {
	// Force rewrites the config of a home that has one. The home's identity
	// key and cluster secret are kept unless NewIdentity or NewSecret (or
	// Secret) says otherwise: replacing either silently cuts the node off
	// from its mesh.
	Force       bool
	NewIdentity bool
	NewSecret   bool
	// Secret is the hex cluster secret to join an existing mesh with; ""
	// keeps the home's secret, or makes a new mesh with a fresh one.
	Secret string
}

// InitResult says what Init wrote and what it kept.
type InitResult struct {
	Identity     Identity
	KeptIdentity bool // the home's identity key was kept
	KeptSecret   bool // the home's cluster secret was kept
}

// Init creates the home directory (mode 0700), writes cfg to its config
// file, and the node's identity key and cluster secret where the home has
// none (or opts asks for new ones). It refuses a home that already has a
// config unless opts.Force is set, leaves stored data alone, and refuses
// while a daemon runs on the home.
//
// A config the daemon could not run with (an address that does not parse,
// NBD TLS files that are missing, not PEM, or a key that is not the
// certificate's) is refused with an error matching volume.ErrInvalid.
func Init(cfg Config, opts InitOptions) (InitResult, error) {
	// A config the daemon could not start with is refused here, while the
	// operator is at the command line (ErrInvalid: a bad flag value).
	if err := cfg.Validate(); err != nil {
		return InitResult{}, errkind.Errorf(volume.ErrInvalid, "%w", err)
	}
	if _, err := cfg.nbdCertificate(); err != nil {
		return InitResult{}, errkind.Errorf(volume.ErrInvalid, "%w", err)
	}
	if err := os.MkdirAll(cfg.Home, 0o700); err != nil {
		return InitResult{}, fmt.Errorf("init: %w", err)
	}
	_, err := os.Stat(cfg.Path(ConfigFile))
	switch {
	case err == nil && !opts.Force:
		return InitResult{}, fmt.Errorf("weft home %s is %w (use --force to overwrite its config)", cfg.Home, ErrHomeExists)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return InitResult{}, fmt.Errorf("init: %w", err)
	}
	lock, err := lockHome(cfg)
	if err != nil {
		return InitResult{}, err
	}
	defer lock.unlock()
	var res InitResult
	if res.Identity, res.KeptIdentity, err = initIdentity(cfg, opts.NewIdentity); err != nil {
		return InitResult{}, err
	}
	if res.KeptSecret, err = initSecret(cfg, opts); err != nil {
		return InitResult{}, err
	}
	if err := cfg.Save(); err != nil {
		return InitResult{}, err
	}
	return res, nil
}

// initIdentity keeps the home's identity key unless fresh is set or the
// home has none, and reports whether it kept it.
func initIdentity(cfg Config, fresh bool) (Identity, bool, error) {
	path := cfg.Path(IdentityFile)
	if !fresh {
		id, err := LoadIdentity(path)
		if err == nil {
			return id, true, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return Identity{}, false, fmt.Errorf("init: keep identity (--new-identity replaces it): %w", err)
		}
	}
	id, err := NewIdentity()
	if err != nil {
		return Identity{}, false, err
	}
	return id, false, SaveIdentity(path, id)
}

// initSecret writes the secret opts gives, else keeps the home's unless
// opts.NewSecret is set, else writes a fresh one; it reports whether it
// kept the home's.
func initSecret(cfg Config, opts InitOptions) (bool, error) {
	path := cfg.Path(ClusterSecretFile)
	secret := opts.Secret
	if secret == "" && !opts.NewSecret {
		_, err := loadClusterSecret(path)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("init: keep cluster secret (--new-secret replaces it): %w", err)
		}
	}
	if secret == "" {
		var err error
		if secret, err = NewClusterSecret(); err != nil {
			return false, err
		}
	}
	return false, saveClusterSecret(path, secret)
}
