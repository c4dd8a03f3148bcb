package transfer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/datapath"
	"github.com/weft-mesh/weft/internal/clock"
	"github.com/weft-mesh/weft/internal/peerlimit"
	"github.com/weft-mesh/weft/mesh/catalog"
	"github.com/weft-mesh/weft/mesh/meshnet"
	"github.com/weft-mesh/weft/placement"
	"github.com/weft-mesh/weft/volume"
)

// Catalog is what the service asks of the cluster layer: the membership
// view and the replicated catalog. A *cluster.Cluster satisfies it.
type Catalog interface {
	Self() meshnet.PeerID
	Site() string
	// Live returns the live members for placement, this node included.
	Live() []placement.Member
	// Members returns every known member, this node included.
	Members() []meshnet.Member
	// SitePeers returns the live members of site other than this node,
	// in placement order for key.
	SitePeers(site string, key cid.Cid) []meshnet.PeerID
	// CheckOwner returns nil when this node may write disk, else an error
	// that names the owner (matched by the daemon as "not the owner").
	CheckOwner(disk string) error
	// Entry finds what a ref names in the catalog; AwaitEntry waits a
	// moment for a record made elsewhere to arrive.
	Entry(ref volume.Ref) (catalog.Entry, bool)
	AwaitEntry(ctx context.Context, ref volume.Ref) (catalog.Entry, bool)
	// List returns the live records whose keys start with prefix.
	List(prefix string) []catalog.Entry
	// Merge merges records a transfer's sender names.
	Merge(es []catalog.Entry)
	// Publish returns once the catalog records of keys reflect this
	// node's volumes.
	Publish(ctx context.Context, keys ...string) error
	// PutRecord writes a record (a policy) and gossips it.
	PutRecord(e catalog.Entry) (catalog.Entry, error)
	// Tombstone removes key at epoch and gossips the tombstone.
	Tombstone(key string, epoch uint64) (catalog.Entry, error)
	// RemoveReplica removes a replica from this node's volumes and
	// tombstones its record, in one step against reconcile passes.
	RemoveReplica(ctx context.Context, disk, name string) error
}

// Volumes is what the service asks of this node's volumes; a
// *volume.Manager satisfies it.
type Volumes interface {
	// Records lists this node's disks, replicas and spacesuit versions.
	Records() []volume.Record
	Commit(ctx context.Context, disk string) (volume.DiskInfo, error)
	CreateReplica(ctx context.Context, disk, name string) (volume.ReplicaInfo, error)
	AddReplica(ctx context.Context, r volume.ReplicaInfo, root cid.Cid) error
	RemoveReplica(ctx context.Context, disk, name string) error
	ListReplicas(ctx context.Context, disk string) ([]volume.ReplicaInfo, error)
	KeepSpacesuit(ctx context.Context, s volume.SpacesuitInfo, root cid.Cid) error
	CreateDiskAt(ctx context.Context, spec volume.DiskSpec, root cid.Cid) (volume.DiskInfo, error)
	OpenView(ctx context.Context, ref volume.Ref) (*volume.View, error)
	Head(name string) (*volume.Head, error)
	Clone(ctx context.Context, src volume.Ref, name, creator string) (volume.DiskInfo, error)
	Restore(ctx context.Context, disk, replica string) (volume.RestoreResult, error)
}

// Config configures a Service. Net, Catalog, Blocks and Store are
// required.
type Config struct {
	Net     meshnet.Network
	Catalog Catalog
	// Volumes nil: AttachVolumes attaches them later (a node's volumes
	// open while its peers already push to it).
	Volumes Volumes
	// Blocks fetches blocks from peers; Store is this node's block store.
	Blocks datapath.Peers
	Store  datapath.Store
	// Bandwidth caps all transfers of this node together, bytes/s; 0 is
	// no cap.
	Bandwidth float64
	// Dir holds the journal (transfers.json) and the partial roots
	// (partial.json); "" keeps them in memory.
	Dir string
	// Clock is the time source; nil is the wall clock.
	Clock  clock.Clock
	Logger *slog.Logger
}

// Service runs this node's transfers (pushes, pulls, receives, the
// background pulls of clones) and its replication policies. It is safe for
// concurrent use.
type Service struct {
	net     meshnet.Network
	cat     Catalog
	vols    Volumes // set once, by New or AttachVolumes, then attached is closed
	blocks  datapath.Peers
	store   datapath.Store
	sched   *datapath.Scheduler
	clock   clock.Clock
	log     *slog.Logger
	self    meshnet.PeerID
	selfStr string // base58, as the catalog names peers
	site    string

	// attached is closed once vols is set: the protocols' streams wait
	// for it (awaitVolumes).
	attached chan struct{}

	mu   sync.Mutex
	jobs map[string]*Job

	// policyMu makes the policy writes one at a time, so that a cycle
	// saving what it did reads the record an operator wrote last.
	policyMu sync.Mutex

	crowds   crowdTracker     // pullers of the roots pulled from this node now
	receives *peerlimit.Turns // of each pusher's, maxReceivesPerPeer
	partial  *partialRoots
	journal  *journal
}

// New loads the journal and the partial roots from cfg.Dir and registers
// the transfer and crowd protocols on cfg.Net. Run starts the rest.
func New(cfg Config) (*Service, error) {
	var errs []error
	if cfg.Net == nil {
		errs = append(errs, errors.New("no network"))
	}
	if cfg.Catalog == nil {
		errs = append(errs, errors.New("no catalog"))
	}
	if cfg.Blocks == nil || cfg.Store == nil {
		errs = append(errs, errors.New("no block exchange or store"))
	}
	if cfg.Bandwidth < 0 {
		errs = append(errs, fmt.Errorf("bandwidth %v: must not be negative", cfg.Bandwidth))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("transfer config: %w", err)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	self := cfg.Catalog.Self()
	s := &Service{
		net: cfg.Net, cat: cfg.Catalog, vols: cfg.Volumes, blocks: cfg.Blocks, store: cfg.Store,
		sched: datapath.NewScheduler(cfg.Bandwidth), clock: cfg.Clock, log: cfg.Logger,
		self: self, selfStr: self.String(), site: cfg.Catalog.Site(), jobs: map[string]*Job{},
		attached: make(chan struct{}), receives: &peerlimit.Turns{Limit: maxReceivesPerPeer},
	}
	var partialPath, journalPath string
	if cfg.Dir != "" {
		partialPath, journalPath = filepath.Join(cfg.Dir, "partial.json"), filepath.Join(cfg.Dir, "transfers.json")
	}
	var err error
	if s.partial, err = loadPartialRoots(partialPath, s.clock); err != nil {
		return nil, err
	}
	if s.journal, err = loadJournal(journalPath, s.clock); err != nil {
		return nil, err
	}
	if cfg.Volumes != nil {
		s.AttachVolumes(cfg.Volumes)
	}
	s.net.Handle(Protocol, s.serveReceive)
	s.net.Handle(CrowdProtocol, s.serveCrowd)
	return s, nil
}

// AttachVolumes gives a Service built without volumes this node's, once
// they are open; call it once, before Run and before any other call.
func (s *Service) AttachVolumes(v Volumes) {
	s.vols = v
	close(s.attached)
}

// volumesWait bounds how long a stream that arrives while this node's
// volumes open waits for them.
const volumesWait = time.Minute

// awaitVolumes waits until the volumes are attached: a peer that sees
// this node alive may push to it while they open, and its push should wait
// rather than fail.
func (s *Service) awaitVolumes(ctx context.Context) error {
	select {
	case <-s.attached:
		return nil
	default:
	}
	select {
	case <-s.attached:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s is opening its volumes: %w", s.self, ctx.Err())
	case <-s.clock.After(volumesWait):
		return fmt.Errorf("%s is still opening its volumes after %v: %w", s.self, volumesWait, meshnet.ErrUnreachable)
	}
}

// Run resumes the journaled transfers and runs the replication policies
// until ctx ends. From then on, transfers cut short stay journaled and
// resume at the next start.
func (s *Service) Run(ctx context.Context) {
	context.AfterFunc(ctx, s.journal.close)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.resume(ctx) }()
	go func() { defer wg.Done(); s.replicateLoop(ctx) }()
	wg.Wait()
}

// PartialRoots returns the roots of transfers received in part: heal keeps
// their blocks here and GC keeps them, so that a resumed transfer starts
// from what arrived.
func (s *Service) PartialRoots() []cid.Cid { return s.partial.list() }
