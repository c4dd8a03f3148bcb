package node

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/volume"
)

// writeKeyPair writes a self-signed certificate and its key as PEM files
// named NAME-cert.pem and NAME-key.pem in dir.
func writeKeyPair(t *testing.T, dir, name string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, name+"-cert.pem"), filepath.Join(dir, name+"-key.pem")
	for p, b := range map[string]*pem.Block{cert: {Type: "CERTIFICATE", Bytes: der}, key: {Type: "EC PRIVATE KEY", Bytes: kder}} {
		if err := os.WriteFile(p, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cert, key
}

// TestInitChecksNBDTLS: init refuses NBD TLS files the daemon could not
// load (missing, not PEM, a key of another certificate), as a bad flag
// value, and writes no config; a matching pair is accepted.
func TestInitChecksNBDTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeKeyPair(t, dir, "a")
	_, otherKey := writeKeyPair(t, dir, "b")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, cert, key, want string
	}{
		{"missing certificate", filepath.Join(dir, "nope.pem"), key, "nbd tls certificate: open " + filepath.Join(dir, "nope.pem") + ": no such file or directory"},
		{"missing key", cert, filepath.Join(dir, "nope.pem"), "nbd tls key: open " + filepath.Join(dir, "nope.pem")},
		{"garbage certificate", garbage, key, "failed to find any PEM data in certificate input"},
		{"garbage key", cert, garbage, "failed to find any PEM data in key input"},
		{"key of another certificate", cert, otherKey, "private key does not match public key"},
	}
	for _, c := range cases {
		cfg := DefaultConfig()
		cfg.Home = filepath.Join(t.TempDir(), "home")
		cfg.NBDTLSCert, cfg.NBDTLSKey = c.cert, c.key
		_, err := Init(cfg, InitOptions{})
		if !errors.Is(err, volume.ErrInvalid) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "tls: tls:") {
			t.Errorf("%s: Init: got %v, want ErrInvalid saying %q", c.name, err, c.want)
		}
		if _, err := os.Stat(cfg.Path(ConfigFile)); err == nil {
			t.Errorf("%s: Init wrote a config", c.name)
		}
	}
	cfg := DefaultConfig()
	cfg.Home = filepath.Join(t.TempDir(), "home")
	cfg.NBDTLSCert, cfg.NBDTLSKey = cert, key
	if _, err := Init(cfg, InitOptions{}); err != nil {
		t.Fatalf("Init with a matching certificate and key: %v", err)
	}
}
