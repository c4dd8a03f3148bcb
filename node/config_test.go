package node

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weft-mesh/weft/mesh"
)

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	good.Home = t.TempDir()
	if err := good.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	bad := map[string]func(*Config){
		"no home":        func(c *Config) { c.Home = "" },
		"bad site":       func(c *Config) { c.Site = "a b" },
		"bad multiaddr":  func(c *Config) { c.Listen = []string{"/ip4/1.2.3/tcp/1"} },
		"not multiaddr":  func(c *Config) { c.Listen = []string{"0.0.0.0:4001"} },
		"nbd no port":    func(c *Config) { c.NBD = "127.0.0.1" },
		"http bad port":  func(c *Config) { c.HTTP = "127.0.0.1:99999" },
		"negative  tick": func(c *Config) { c.CommitInterval = -1 },
		"probe too fast": func(c *Config) { c.ProbeInterval = 10 * time.Millisecond },
		"negative probe": func(c *Config) { c.ProbeInterval = -time.Second },
		"suspicion 1":    func(c *Config) { c.SuspicionMult = 1 },
		"reserve 1M":     func(c *Config) { c.ReserveBytes = 1 << 20 },
		"reserve < 0":    func(c *Config) { c.ReserveBytes = -1 },
		"negative grace": func(c *Config) { c.PeerBlockGrace = -1 },
	}
	for name, mutate := range bad {
		c := good
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate() = nil, want an error", name)
		}
	}
}

// TestConfigDetector checks that the config's detector timing overrides
// the default field by field, zero keeping the default.
func TestConfigDetector(t *testing.T) {
	def := mesh.DefaultDetector()
	for _, tc := range []struct {
		probe time.Duration
		mult  int
		want  mesh.Detector
	}{
		{0, 0, def},
		{2 * time.Second, 0, mesh.Detector{ProbeInterval: 2 * time.Second, SuspicionMult: def.SuspicionMult}},
		{0, 6, mesh.Detector{ProbeInterval: def.ProbeInterval, SuspicionMult: 6}},
	} {
		c := Config{ProbeInterval: tc.probe, SuspicionMult: tc.mult}
		if got := c.Detector(); got != tc.want {
			t.Errorf("probe %v, mult %d: got %+v, want %+v", tc.probe, tc.mult, got, tc.want)
		}
	}
}

func TestInitLoad(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Home = filepath.Join(t.TempDir(), "home")
	cfg.Site = "rack-7"
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/4002"}
	res, err := Init(cfg, InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Identity
	if _, err := Init(cfg, InitOptions{}); !errors.Is(err, ErrHomeExists) {
		t.Fatalf("second Init: got %v, want ErrHomeExists", err)
	}
	got, err := Load(cfg.Home)
	if err != nil {
		t.Fatal(err)
	}
	if got.Site != "rack-7" || len(got.Listen) != 1 || got.Listen[0] != cfg.Listen[0] || got.NBD != cfg.NBD {
		t.Fatalf("Load = %+v, want %+v", got, cfg)
	}
	loaded, err := LoadIdentity(cfg.Path(IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	if loaded.ID() != id.ID() {
		t.Fatalf("identity ID %s after load, want %s", loaded.ID(), id.ID())
	}
	res2, err := Init(cfg, InitOptions{Force: true, NewIdentity: true})
	if err != nil {
		t.Fatalf("Init with force: %v", err)
	}
	if res2.KeptIdentity || res2.Identity.ID() == id.ID() {
		t.Fatal("Init with force and a new identity kept the old identity")
	}
	if err := os.Chmod(cfg.Path(IdentityFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentity(cfg.Path(IdentityFile)); err == nil {
		t.Fatal("LoadIdentity accepted a world-readable key")
	}
	if _, err := Load(t.TempDir()); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("Load of an empty dir: got %v, want ErrNotInitialized", err)
	}
}

func TestInitForceKeepsIdentityAndSecret(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Home = t.TempDir()
	first, err := Init(cfg, InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := os.ReadFile(cfg.Path(ClusterSecretFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Site = "moved"
	res, err := Init(cfg, InitOptions{Force: true})
	if err != nil {
		t.Fatalf("Init with force: %v", err)
	}
	if !res.KeptIdentity || !res.KeptSecret || res.Identity.ID() != first.Identity.ID() {
		t.Errorf("Init with force: got %+v (peer %s), want identity %s and secret kept", res, res.Identity.ID(), first.Identity.ID())
	}
	if got, _ := os.ReadFile(cfg.Path(ClusterSecretFile)); !bytes.Equal(got, secret) {
		t.Errorf("cluster secret after Init with force: got %q, want %q kept", got, secret)
	}
	if res, err = Init(cfg, InitOptions{Force: true, NewSecret: true}); err != nil || res.KeptSecret {
		t.Fatalf("Init with a new secret: got %+v, %v; want the secret replaced", res, err)
	}
	if got, _ := os.ReadFile(cfg.Path(ClusterSecretFile)); bytes.Equal(got, secret) {
		t.Error("Init with a new secret kept the old one")
	}
}

func TestOnListenHost(t *testing.T) {
	for _, tc := range []struct {
		listen []string
		want   string
	}{
		{[]string{"/ip4/127.0.0.2/tcp/0"}, "127.0.0.2:7070"},
		{[]string{"/ip4/127.0.0.3/udp/0/quic-v1", "/ip4/127.0.0.1/tcp/0"}, "127.0.0.3:7070"},
		{[]string{"/ip4/0.0.0.0/tcp/4001"}, "127.0.0.1:7070"},
		{[]string{"/ip4/192.0.2.7/tcp/4001"}, "127.0.0.1:7070"},
		{nil, "127.0.0.1:7070"},
	} {
		if got := OnListenHost(tc.listen, "127.0.0.1:7070"); got != tc.want {
			t.Errorf("OnListenHost(%v): got %s, want %s", tc.listen, got, tc.want)
		}
	}
}

func TestHomeLock(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Home = t.TempDir()
	l, err := lockHome(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockHome(cfg); !errors.Is(err, ErrHomeInUse) {
		t.Fatalf("second lock: got %v, want ErrHomeInUse", err)
	}
	if _, err := Init(cfg, InitOptions{Force: true}); !errors.Is(err, ErrHomeInUse) {
		t.Fatalf("Init --force on a locked home: got %v, want ErrHomeInUse", err)
	}
	if err := l.unlock(); err != nil {
		t.Fatal(err)
	}
	l2, err := lockHome(cfg)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	l2.unlock()
}
