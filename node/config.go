package node

import (
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/weft-mesh/weft/api"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weft-mesh/weft/mesh"
	"github.com/weft-mesh/weft/volume"

	"github.com/weft-mesh/weft/internal/jsonfile"
	"github.com/weft-mesh/weft/internal/size"
)

// Files and directories inside a node's home.
const (
	ConfigFile   = "config.json"
	IdentityFile = "identity.key"
	SocketFile   = api.SocketFile
	NBDSocket    = "nbd.sock"
	LockFile     = "lock"
	BlocksDir    = "blocks"
	VolumesDir   = "volumes"
)

// Config is what a node needs to run. Home, Logger and the commit interval
// are not stored in the config file; everything else is.
type Config struct {
	Home   string   `json:"-"`
	Site   string   `json:"site"`   // failure-domain label
	Listen []string `json:"listen"` // multiaddrs for the mesh (used by the mesh)
	NBD    string   `json:"nbd"`    // HOST:PORT of the NBD server; "" disables it
	HTTP   string   `json:"http"`   // HOST:PORT of the HTTP endpoint; "" disables it

	// NBDTLSCert and NBDTLSKey are PEM files (relative paths are in the
	// home) of the X.509 certificate offered to NBD clients through
	// STARTTLS; NBDTLSRequired refuses TCP clients that do not use it.
	NBDTLSCert     string `json:"nbd_tls_cert,omitempty"`
	NBDTLSKey      string `json:"nbd_tls_key,omitempty"`
	NBDTLSRequired bool   `json:"nbd_tls_required,omitempty"`

	// BlockCacheBytes bounds the verified blocks the daemon keeps in memory
	// to serve reads (0 in the file means the default, 1 GiB).
	BlockCacheBytes int64 `json:"block_cache_bytes,omitempty"`

	// HealBandwidth caps the bytes per second self-heal copies to this
	// node (0: no cap); HealConcurrency bounds its fetches in flight.
	HealBandwidth   int64 `json:"heal_bandwidth,omitempty"`
	HealConcurrency int   `json:"heal_concurrency,omitempty"`
	// HealInterval is the time between heal passes when no membership or
	// catalog change triggers one.
	HealInterval time.Duration `json:"heal_interval,omitempty"`
	// PeerBlockGrace is how long weft gc keeps blocks pushed to this node
	// that no root it knows reaches yet (0: volume.DefaultPeerBlockGrace).
	PeerBlockGrace time.Duration `json:"peer_block_grace,omitempty"`

	// ProbeInterval and SuspicionMult time the failure detector (see
	// mesh.Detector); zero in the file means mesh.DefaultDetector's.
	// Longer ones suit links slow enough that a gossip message can wait
	// seconds behind bulk data.
	ProbeInterval time.Duration `json:"probe_interval,omitempty"`
	SuspicionMult int           `json:"suspicion_mult,omitempty"`

	// TransferBandwidth is the node's budget in bytes per second for the
	// transfers it receives (push, pull, replication), shared between them
	// by priority; 0 means no budget (priorities still order requests).
	TransferBandwidth int64 `json:"transfer_bandwidth,omitempty"`

	// ReserveBytes is the free space on the home's file system that blocks
	// stored for the mesh (pushes, heal copies) must leave, kept for the
	// node's own disks (0 in the file means DefaultReserve; see space.go).
	ReserveBytes int64 `json:"reserve_bytes,omitempty"`

	// DockerPlugin makes weft daemon run `weft docker-plugin` beside it
	// (a child process it restarts if it dies) on DockerSocket ("" means
	// /run/docker/plugins/weft.sock).
	DockerPlugin bool   `json:"docker_plugin,omitempty"`
	DockerSocket string `json:"docker_socket,omitempty"`

	// Join lists members to join at start (weft daemon --join); a node
	// that was in a mesh rejoins the peers it knew by itself.
	Join []string `json:"-"`

	// CommitInterval bounds how long a write stays uncommitted in a disk's
	// overlay (heads are committed earlier once quiet for two seconds).
	// Zero disables background commits.
	CommitInterval time.Duration `json:"-"`
	Logger         *slog.Logger  `json:"-"`
}

// DefaultConfig returns the configuration `weft init` writes when given no
// flags. Home is left empty: the caller chooses it.
func DefaultConfig() Config {
	return Config{
		Site:           "default",
		Listen:         []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"},
		NBD:            "127.0.0.1:10809",
		HTTP:           "127.0.0.1:7070",
		CommitInterval: 30 * time.Second,
		Logger:         slog.New(slog.DiscardHandler),
	}
}

// OnListenHost returns addr (HOST:PORT) moved onto the host of the first
// listen address when that is a loopback address (/ip4/127.0.0.2/tcp/0
// moves 127.0.0.1:7070 to 127.0.0.2:7070), else addr unchanged. weft init
// applies it to the NBD and HTTP defaults, so that several nodes on one
// machine, each on its own loopback address, do not all claim the same
// ports; a non-loopback or unspecified listen host keeps the loopback
// default, as the dashboard and NBD are closed to other machines unless
// asked.
func OnListenHost(listen []string, addr string) string {
	if len(listen) == 0 || addr == "" {
		return addr
	}
	host, ok := mesh.ListenIPv4(listen[0])
	if ip := net.ParseIP(host); !ok || ip == nil || !ip.IsLoopback() {
		return addr
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return net.JoinHostPort(host, port)
}

// Validate checks every field and returns the first problem found.
func (c Config) Validate() error {
	if c.Home == "" {
		return errors.New("config: home directory not set")
	}
	if err := volume.ValidateName(c.Site); err != nil {
		return fmt.Errorf("config: site: %w", err)
	}
	for _, a := range c.Listen {
		if err := ValidateMultiaddr(a); err != nil {
			return fmt.Errorf("config: listen: %w", err)
		}
	}
	if c.NBD != "" {
		if err := ValidateHostPort(c.NBD); err != nil {
			return fmt.Errorf("config: nbd: %w", err)
		}
	}
	if (c.NBDTLSCert == "") != (c.NBDTLSKey == "") {
		return errors.New("config: nbd tls: give both a certificate and a key, or neither")
	}
	if c.NBDTLSRequired && c.NBDTLSCert == "" {
		return errors.New("config: nbd tls required but no certificate given")
	}
	if c.HTTP != "" {
		if err := ValidateHostPort(c.HTTP); err != nil {
			return fmt.Errorf("config: http: %w", err)
		}
	}
	for _, a := range c.Join {
		if err := ValidateMultiaddr(a); err != nil {
			return fmt.Errorf("config: join: %w", err)
		}
	}
	if c.TransferBandwidth < 0 {
		return errors.New("config: transfer bandwidth must not be negative")
	}
	if c.ReserveBytes != 0 && c.ReserveBytes < MinReserve {
		return fmt.Errorf("config: reserve %s: must be at least %s (the block store's own floor), or 0 for the default %s",
			size.Format(c.ReserveBytes), size.Format(MinReserve), size.Format(DefaultReserve))
	}
	if c.HealBandwidth < 0 || c.HealConcurrency < 0 || c.HealInterval < 0 {
		return errors.New("config: heal bandwidth, concurrency and interval must not be negative")
	}
	if c.PeerBlockGrace < 0 {
		return errors.New("config: peer block grace must not be negative")
	}
	if err := c.Detector().Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if c.CommitInterval < 0 {
		return fmt.Errorf("config: commit interval %v is negative", c.CommitInterval)
	}
	return nil
}

// Detector returns the failure detector's timing: the config's, with
// mesh.DefaultDetector's for what it leaves zero.
func (c Config) Detector() mesh.Detector {
	d := mesh.DefaultDetector()
	if c.ProbeInterval != 0 {
		d.ProbeInterval = c.ProbeInterval
	}
	if c.SuspicionMult != 0 {
		d.SuspicionMult = c.SuspicionMult
	}
	return d
}

// nbdCertificate loads the certificate and key NBD offers with STARTTLS
// (relative paths are in the home): both files must be readable PEM and the
// key must be the certificate's. It returns nil when TLS is not configured.
func (c Config) nbdCertificate() (*tls.Certificate, error) {
	if c.NBDTLSCert == "" {
		return nil, nil
	}
	certFile, keyFile := homePath(c, c.NBDTLSCert), homePath(c, c.NBDTLSKey)
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("nbd tls certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("nbd tls key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("nbd tls: certificate %s, key %s: %s", certFile, keyFile, strings.TrimPrefix(err.Error(), "tls: "))
	}
	return &cert, nil
}

// ValidateMultiaddr checks the syntax of a listen address such as
// /ip4/0.0.0.0/tcp/4001.
func ValidateMultiaddr(s string) error {
	return mesh.ValidateListen(s)
}

// ValidateHostPort checks an address of the form HOST:PORT with a port in
// 1..65535. HOST may be empty (all interfaces).
func ValidateHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("address %q: want HOST:PORT: %v", s, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("address %q: port %q is not a number in 1..65535", s, port)
	}
	return nil
}

// Path returns the path of a file or directory inside the home.
func (c Config) Path(name string) string { return filepath.Join(c.Home, name) }

// SocketPath returns the path of the local API socket.
func (c Config) SocketPath() string { return c.Path(SocketFile) }

// ErrNotInitialized is wrapped by Load when the home has no config file.
var ErrNotInitialized = errors.New("not initialized")

// Load reads HOME/config.json. The returned Config has Home set to home and
// the defaults for the fields the file does not hold.
func Load(home string) (Config, error) {
	cfg := DefaultConfig()
	cfg.Home = home
	err := jsonfile.Load(cfg.Path(ConfigFile), &cfg)
	if errors.Is(err, fs.ErrNotExist) {
		return Config{}, fmt.Errorf("weft home %s is %w (create it with: weft init --home %s)", home, ErrNotInitialized, home)
	}
	if err != nil {
		return Config{}, fmt.Errorf("load config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("load %s: %w", cfg.Path(ConfigFile), err)
	}
	return cfg, nil
}

// Save writes the config file atomically (temporary file, fsync, rename).
func (c Config) Save() error {
	if err := jsonfile.Save(c.Path(ConfigFile), c, 0o644); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	return nil
}

// recordListenPorts writes the ports the mesh picked for the listen
// addresses with port 0 into the home's config file, so that the node
// listens on the same ports after a restart and the addresses peers and
// join tokens hold stay valid. It returns the listen addresses to use.
func recordListenPorts(cfg Config, bound []string, log *slog.Logger) ([]string, error) {
	if slices.Equal(cfg.Listen, bound) {
		return cfg.Listen, nil
	}
	// The file, not cfg: cfg holds the daemon's flags too.
	stored, err := Load(cfg.Home)
	if err != nil {
		return nil, fmt.Errorf("record listen ports: %w", err)
	}
	stored.Listen = bound
	if err := stored.Save(); err != nil {
		return nil, fmt.Errorf("record listen ports: %w", err)
	}
	log.Info("listen ports recorded in the config", "listen", bound)
	return bound, nil
}
