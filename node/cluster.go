package node

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/weft-mesh/weft/internal/atomicfile"
)

// ClusterSecretFile holds the mesh's shared secret, hex-encoded. Only nodes
// that know it are admitted to the mesh.
const ClusterSecretFile = "cluster.secret"

// clusterSecretLen is the size of a generated secret in bytes.
const clusterSecretLen = 32

// NewClusterSecret returns a fresh random secret, hex-encoded.
func NewClusterSecret() (string, error) {
	b := make([]byte, clusterSecretLen)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate cluster secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// ParseClusterSecret checks the text of a secret file: at least 16 bytes
// as hex.
func ParseClusterSecret(text string) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimSpace(text))
	if err != nil {
		return nil, fmt.Errorf("cluster secret: not hex: %v", err)
	}
	if len(b) < 16 {
		return nil, fmt.Errorf("cluster secret: %d bytes, want at least 16", len(b))
	}
	return b, nil
}

// saveClusterSecret writes the secret with mode 0600.
func saveClusterSecret(path, hexSecret string) error {
	if _, err := ParseClusterSecret(hexSecret); err != nil {
		return err
	}
	return atomicfile.Write(path, []byte(strings.TrimSpace(hexSecret)+"\n"), 0o600)
}

// loadClusterSecret reads the home's secret; like the identity key, it
// must not be readable by others.
func loadClusterSecret(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load cluster secret: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("load cluster secret: %s has mode %v; it must not be readable by others (chmod 600)", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load cluster secret: %w", err)
	}
	return ParseClusterSecret(string(b))
}
