package node

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"

	"github.com/weft-mesh/weft/internal/atomicfile"
	"github.com/weft-mesh/weft/mesh"
	"github.com/weft-mesh/weft/mesh/meshnet"
)

// Identity is a node's long-lived key pair. The mesh turns it into the
// node's libp2p peer ID.
type Identity struct {
	Key ed25519.PrivateKey
}

// NewIdentity generates a fresh Ed25519 identity.
func NewIdentity() (Identity, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Identity{}, fmt.Errorf("generate identity: %w", err)
	}
	return Identity{Key: priv}, nil
}

// ID is the node's libp2p peer ID (base58, "12D3Koo..."), derived from
// the public key: the name other nodes know it by.
func (id Identity) ID() string {
	p, err := id.PeerID()
	if err != nil {
		return "invalid-identity"
	}
	return p.String()
}

// PeerID returns the node's libp2p peer ID.
func (id Identity) PeerID() (meshnet.PeerID, error) {
	p, err := mesh.PeerIDFromKey(id.Key)
	if err != nil {
		return "", fmt.Errorf("identity: %w", err)
	}
	return p, nil
}

// SaveIdentity writes the key to path as PEM PKCS#8 with mode 0600,
// replacing any existing file atomically.
func SaveIdentity(path string, id Identity) error {
	der, err := x509.MarshalPKCS8PrivateKey(id.Key)
	if err != nil {
		return fmt.Errorf("save identity: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("save identity: %w", err)
	}
	return nil
}

// LoadIdentity reads a key written by SaveIdentity. It refuses a key file
// that other users can read.
func LoadIdentity(path string) (Identity, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Identity{}, fmt.Errorf("load identity: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return Identity{}, fmt.Errorf("load identity: %s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Identity{}, fmt.Errorf("load identity: %w", err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return Identity{}, fmt.Errorf("load identity %s: no PEM PRIVATE KEY block", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return Identity{}, fmt.Errorf("load identity %s: %w", path, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return Identity{}, fmt.Errorf("load identity %s: key is %T, want Ed25519", path, key)
	}
	return Identity{Key: priv}, nil
}
