package mesh

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/weft-mesh/weft/mesh/meshnet"
)

// leaveTimeout bounds how long Close waits for the news of its departure to
// go out before it shuts down anyway.
const leaveTimeout = 2 * time.Second

// Mesh is the network layer of one node. Its methods are safe for
// concurrent use.
type Mesh struct {
	cfg       Config
	log       *slog.Logger
	host      host.Host
	gated     *gatedHost
	admission *admission
	book      *gossipBook
	dht       *dht.IpfsDHT
	ml        *memberlist.Memberlist
	members   *memberTable
	// broadcasts holds the application broadcasts until gossip has
	// carried each to enough members.
	broadcasts *memberlist.TransmitLimitedQueue
	peers      *peerFile
	listen     []string // cfg.Listen with the ports bound for port 0

	used, free atomic.Int64
	leaving    atomic.Bool

	changed  chan struct{} // membership changed; buffered 1, coalescing
	mu       sync.Mutex
	onChange []func()

	ctx       context.Context // the mesh's lifetime
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New starts a node: the libp2p host listening on cfg.Listen, admission,
// the DHT and memberlist. It does not join anyone; call Join, or give
// cfg.Dir so that a restarted node rejoins the peers it knew. ctx bounds the
// start only.
func New(ctx context.Context, cfg Config) (*Mesh, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h, err := newHost(&cfg)
	if err != nil {
		return nil, err
	}
	m, err := start(ctx, cfg, h)
	if err != nil {
		h.Close()
		return nil, err
	}
	return m, nil
}

func start(ctx context.Context, cfg Config, h host.Host) (*Mesh, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	gossip := cfg.Detector.Gossip()
	if cfg.Gossip != nil {
		copied := *cfg.Gossip
		gossip = &copied
	}
	listen, err := boundListen(cfg.Listen, h.Network().ListenAddresses())
	if err != nil {
		return nil, err
	}
	lifetime, cancel := context.WithCancel(context.Background())
	m := &Mesh{
		listen:  listen,
		cfg:     cfg,
		log:     cfg.Logger.With("component", "mesh"),
		host:    h,
		book:    newGossipBook(),
		members: newMemberTable(gossip.GossipToTheDeadTime),
		changed: make(chan struct{}, 1),
		ctx:     lifetime,
		cancel:  cancel,
	}
	m.book.learn(h.ID())
	m.admission = newAdmission(lifetime, h, cfg.Secret, m.log, m.peerAdmitted)
	m.gated = &gatedHost{Host: h, admission: m.admission}
	m.broadcasts = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return m.members.alive() + 1 },
		RetransmitMult: gossip.RetransmitMult,
	}
	m.sampleCapacity()

	m.peers, err = openPeerFile(cfg.Dir)
	if err != nil {
		cancel()
		return nil, err
	}
	m.dht, err = dht.New(lifetime, m.gated,
		dht.Mode(dht.ModeServer),
		dht.ProtocolPrefix(dhtPrefix),
	)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("dht: %w", err)
	}
	m.admission.start()

	gossip.Name = h.ID().String()
	gossip.Transport = newGossipTransport(m.gated, m.book, m.log)
	gossip.UDPBufferSize = gossipPacketSize
	gossip.Delegate = gossipDelegate{m}
	gossip.Events = gossipDelegate{m}
	gossip.Alive = gossipDelegate{m}
	gossip.LogOutput = nil
	gossip.Logger = log.New(memberlistLog{cfg.Logger.With("component", "memberlist")}, "", 0)
	m.ml, err = memberlist.Create(gossip)
	if err != nil {
		m.dht.Close()
		cancel()
		return nil, fmt.Errorf("memberlist: %w", err)
	}

	m.goLoop(m.notifyLoop)
	m.goLoop(m.capacityLoop)
	m.goLoop(m.rejoinLoop)
	m.log.Info("mesh started", "addrs", m.Addrs(), "site", cfg.Site)
	return m, nil
}

func (m *Mesh) goLoop(loop func(context.Context)) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		loop(m.ctx)
	}()
}

// ID returns the node's peer ID.
func (m *Mesh) ID() peer.ID { return m.host.ID() }

// Self returns the node's peer ID.
func (m *Mesh) Self() meshnet.PeerID { return meshnet.PeerID(m.host.ID()) }

// Addrs returns the node's dialable multiaddrs with /p2p/<id>, sorted,
// loopback included.
func (m *Mesh) Addrs() []string {
	suffix := "/p2p/" + m.ID().String()
	addrs := m.host.Addrs()
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.String()+suffix)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Members returns every member this node knows, itself included, sorted by
// ID. A member that left stays listed as long as memberlist remembers it
// (its GossipToTheDeadTime); one that died stays listed, dead, until it
// comes back or Forget drops it.
func (m *Mesh) Members() []Member {
	out := m.members.list(time.Now())
	self := m.localMeta()
	state := StateAlive
	if m.leaving.Load() {
		state = StateLeft
	}
	out = append(out, Member{
		ID:    m.Self(),
		Site:  self.Site,
		State: state,
		Addrs: addrStrings(m.listenAddrs()),
		Used:  self.Used,
		Free:  self.Free,
		Self:  true,
	})
	sortMembers(out)
	return out
}

// Forget drops a member that is dead or left from this node's view and
// from the peers it rejoins after a restart. It refuses a live member
// (ErrMemberAlive) and a peer it does not know (ErrUnknownMember). The
// member is listed again if it comes back.
func (m *Mesh) Forget(id meshnet.PeerID) error {
	if err := m.members.forget(peer.ID(id)); err != nil {
		return err
	}
	if err := m.peers.forget(peer.ID(id)); err != nil {
		m.log.Warn("known peers not saved", "err", err)
	}
	m.log.Info("member forgotten", "peer", id)
	m.signalChange()
	return nil
}

// OnMembershipChange registers fn to be called after a member joins,
// leaves, dies or updates its metadata. Calls are asynchronous, made from
// one goroutine without any lock held, and coalesced: a burst of changes
// may produce one call.
func (m *Mesh) OnMembershipChange(fn func()) {
	m.mu.Lock()
	m.onChange = append(m.onChange, fn)
	m.mu.Unlock()
}

func (m *Mesh) signalChange() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// notifyLoop runs the membership-change callbacks and saves the known
// peers, outside memberlist's locks.
func (m *Mesh) notifyLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.changed:
		}
		m.savePeers()
		m.mu.Lock()
		fns := slices.Clone(m.onChange)
		m.mu.Unlock()
		for _, fn := range fns {
			fn()
		}
	}
}

// localMeta is what this node gossips about itself.
func (m *Mesh) localMeta() nodeMeta {
	addrs := m.listenAddrs()
	raw := make([][]byte, len(addrs))
	for i, a := range addrs {
		raw[i] = a.Bytes()
	}
	return nodeMeta{
		Site:    m.cfg.Site,
		Addrs:   raw,
		Used:    m.used.Load(),
		Free:    m.free.Load(),
		Leaving: m.leaving.Load(),
	}
}

// listenAddrs returns the host's addresses, the ones most useful to a
// remote node first (loopback last), as metadata keeps only what fits.
func (m *Mesh) listenAddrs() []multiaddr.Multiaddr {
	addrs := slices.Clone(m.host.Addrs())
	slices.SortStableFunc(addrs, func(a, b multiaddr.Multiaddr) int {
		return cmp.Or(
			cmp.Compare(loopbackRank(a), loopbackRank(b)),
			cmp.Compare(a.String(), b.String()),
		)
	})
	return addrs
}

func loopbackRank(a multiaddr.Multiaddr) int {
	if manet.IsIPLoopback(a) {
		return 1
	}
	return 0
}

// Close leaves the cluster gracefully (the others record this node as left,
// not dead), then shuts down memberlist, the DHT and the host. It waits at
// most leaveTimeout for each of the two announcements. Close is idempotent.
func (m *Mesh) Close() error {
	m.closeOnce.Do(func() { m.closeErr = m.close() })
	return m.closeErr
}

func (m *Mesh) close() error {
	m.leaving.Store(true)
	if err := m.ml.UpdateNode(leaveTimeout); err != nil {
		m.log.Debug("leaving flag not gossiped", "err", err)
	}
	if err := m.ml.Leave(leaveTimeout); err != nil {
		m.log.Warn("leave not gossiped", "err", err)
	}
	m.cancel()
	m.wg.Wait()
	var errs []error
	if err := m.ml.Shutdown(); err != nil {
		errs = append(errs, fmt.Errorf("memberlist: %w", err))
	}
	if err := m.dht.Close(); err != nil {
		errs = append(errs, fmt.Errorf("dht: %w", err))
	}
	if err := m.host.Close(); err != nil {
		errs = append(errs, fmt.Errorf("host: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close mesh: %w", err)
	}
	m.log.Info("mesh closed")
	return nil
}
