package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/weft-mesh/weft/volume"
)

// ErrHomeExists is wrapped by Init when the home already holds a config.
var ErrHomeExists = errors.New("already initialized")

// Init creates the home directory (mode 0700), writes cfg to its config
// file and generates the node's identity key. It refuses a home that
// already has a config unless force is set; with force it replaces the
// config and the identity but leaves stored data alone, and still refuses
// while a daemon runs on the home.
//
// secret is the hex cluster secret to join an existing mesh with; "" makes
// a new mesh with a fresh secret.
//
// A config the daemon could not run with (an address that does not parse,
// NBD TLS files that are missing, not PEM, or a key that is not the
// certificate's) is refused with an error matching volume.ErrInvalid.
func Init(cfg Config, force bool, secret string) (Identity, error) {
	// A config the daemon could not start with is refused here, while the
	// operator is at the command line (ErrInvalid: a bad flag value).
	if err := cfg.Validate(); err != nil {
		return Identity{}, kindf(volume.ErrInvalid, "%w", err)
	}
	if _, err := cfg.nbdCertificate(); err != nil {
		return Identity{}, kindf(volume.ErrInvalid, "%w", err)
	}
	if err := os.MkdirAll(cfg.Home, 0o700); err != nil {
		return Identity{}, fmt.Errorf("init: %w", err)
	}
	_, err := os.Stat(cfg.Path(ConfigFile))
	switch {
	case err == nil && !force:
		return Identity{}, fmt.Errorf("weft home %s is %w (use --force to overwrite its config and identity)", cfg.Home, ErrHomeExists)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return Identity{}, fmt.Errorf("init: %w", err)
	}
	lock, err := lockHome(cfg)
	if err != nil {
		return Identity{}, err
	}
	defer lock.unlock()
	id, err := NewIdentity()
	if err != nil {
		return Identity{}, err
	}
	if err := SaveIdentity(cfg.Path(IdentityFile), id); err != nil {
		return Identity{}, err
	}
	if secret == "" {
		if secret, err = NewClusterSecret(); err != nil {
			return Identity{}, err
		}
	}
	if err := saveClusterSecret(cfg.Path(ClusterSecretFile), secret); err != nil {
		return Identity{}, err
	}
	if err := cfg.Save(); err != nil {
		return Identity{}, err
	}
	return id, nil
}
