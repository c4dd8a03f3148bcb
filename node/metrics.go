package node

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/datapath"
	"github.com/weft-mesh/weft/heal"
	"github.com/weft-mesh/weft/mesh"
	"github.com/weft-mesh/weft/node/iscsi"
	"github.com/weft-mesh/weft/node/nbd"
)

// metricsSources is what the metrics read at scrape time; any func may be
// nil (a node without a mesh), and its metrics are then left out. The funcs
// are called from the scraping goroutine and must be safe for that.
type metricsSources struct {
	Store     func() blockstore.Stats
	Heal      func() heal.Status
	Members   func() []Peer
	Transfers func() []TransferInfo
	// Space is the free space on the home's file system, the reserve and
	// their state (space.go), as `weft status` reports them.
	Space func() SpaceStatus
	// UnderReplicated is the figure `weft status` reports; on an error
	// the metric is left out of the scrape rather than reported as 0.
	UnderReplicated func() (int64, error)
}

// nodeMetrics is a node's Prometheus metrics. They live in a registry of
// the node's own, never the global one, so that many nodes in one process
// (tests, simulations) keep theirs apart.
type nodeMetrics struct {
	reg   *prometheus.Registry
	nbd   *nbdMetrics
	iscsi *iscsiMetrics
}

func newNodeMetrics(src metricsSources) *nodeMetrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newSourceCollector(src))
	nm := newNBDMetrics()
	reg.MustRegister(nm.requests, nm.bytes, nm.latency)
	im := newISCSIMetrics()
	reg.MustRegister(im.logins, im.commands, im.bytes, im.latency, im.buffered)
	return &nodeMetrics{reg: reg, nbd: nm, iscsi: im}
}

// Handler serves the metrics in the Prometheus exposition formats.
func (m *nodeMetrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// NBD returns the observer to set as the NBD server's Config.Observer.
func (m *nodeMetrics) NBD() nbd.Observer { return m.nbd }

// ISCSI returns the observer to set as the iSCSI server's Config.Observer.
func (m *nodeMetrics) ISCSI() iscsi.Observer { return m.iscsi }

// Descriptions of the metrics read from the sources at scrape time.
var (
	storeBlocksDesc = prometheus.NewDesc("weft_blockstore_blocks",
		"Blocks in the local block store.", nil, nil)
	storeBytesDesc = prometheus.NewDesc("weft_blockstore_bytes",
		"Payload bytes of the blocks in the local block store.", nil, nil)
	storeDiskBytesDesc = prometheus.NewDesc("weft_blockstore_disk_bytes",
		"Bytes the local block store occupies on disk, garbage included.", nil, nil)
	freeBytesDesc = prometheus.NewDesc("weft_node_free_bytes",
		"Free bytes on the file system of the node's home (block store and write overlays).", nil, nil)
	reserveBytesDesc = prometheus.NewDesc("weft_node_reserve_bytes",
		"Free bytes that blocks stored for other nodes must leave, kept for this node's own disks.", nil, nil)
	deviceFullDesc = prometheus.NewDesc("weft_node_device_full",
		"1 while free space is below the block store's floor: commits fail and clients get ENOSPC once the overlays cannot grow.", nil, nil)

	healUnderDesc = prometheus.NewDesc("weft_heal_under_replicated_blocks",
		"Blocks of the disks this node lists that fewer than R live members confirmed holding, as weft status reports them.", nil, nil)
	healPendingDesc = prometheus.NewDesc("weft_heal_pending_blocks",
		"Blocks the running heal pass still has to copy here.", nil, nil)
	healCopiedBlocksDesc = prometheus.NewDesc("weft_heal_copied_blocks_total",
		"Blocks copied here by heal passes.", nil, nil)
	healCopiedBytesDesc = prometheus.NewDesc("weft_heal_copied_bytes_total",
		"Bytes copied here by heal passes.", nil, nil)
	healDroppedDesc = prometheus.NewDesc("weft_heal_dropped_blocks_total",
		"Surplus block copies dropped by heal passes.", nil, nil)
	healPassesDesc = prometheus.NewDesc("weft_heal_passes_total",
		"Heal passes completed.", nil, nil)

	membersDesc = prometheus.NewDesc("weft_mesh_members",
		"Gossip members by state, this node included.", []string{"state"}, nil)

	transferBytesDesc = prometheus.NewDesc("weft_transfer_sent_bytes_total",
		"Bytes sent by transfers, by priority.", []string{"priority"}, nil)
	transfersRunningDesc = prometheus.NewDesc("weft_transfer_running",
		"Transfers running.", nil, nil)
)

// Label values reported even at zero, so that series exist from the start
// and a state emptied does not vanish from dashboards.
var (
	memberStates = []string{string(mesh.StateAlive), string(mesh.StateDead), string(mesh.StateLeft)}
	priorities   = []string{datapath.VeryLow.String(), datapath.Low.String(), datapath.Normal.String(), datapath.High.String(), datapath.VeryHigh.String()}
)

// sourceCollector turns the sources into metrics at each scrape, so the
// figures are never staler than the scrape and nothing is updated between
// scrapes. The heal figures grow monotonically in heal.Status and are
// exposed as counters as they are.
type sourceCollector struct {
	src metricsSources

	// Transfers are listed only while running or recent, so a sum of their
	// BytesSent would fall when an old one is forgotten. The counter adds
	// instead what each transfer sent since the last scrape: sent holds
	// the BytesSent last seen by transfer ID and sentTotal the sum by
	// priority. mu serialises concurrent scrapes.
	mu        sync.Mutex
	sent      map[string]int64
	sentTotal map[string]float64
}

func newSourceCollector(src metricsSources) *sourceCollector {
	total := map[string]float64{}
	for _, p := range priorities {
		total[p] = 0
	}
	return &sourceCollector{src: src, sent: map[string]int64{}, sentTotal: total}
}

func (c *sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		storeBlocksDesc, storeBytesDesc, storeDiskBytesDesc, freeBytesDesc, reserveBytesDesc, deviceFullDesc,
		healUnderDesc, healPendingDesc, healCopiedBlocksDesc, healCopiedBytesDesc, healDroppedDesc, healPassesDesc,
		membersDesc, transferBytesDesc, transfersRunningDesc,
	} {
		ch <- d
	}
}

func (c *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	if c.src.Store != nil {
		s := c.src.Store()
		ch <- prometheus.MustNewConstMetric(storeBlocksDesc, prometheus.GaugeValue, float64(s.Blocks))
		ch <- prometheus.MustNewConstMetric(storeBytesDesc, prometheus.GaugeValue, float64(s.Bytes))
		ch <- prometheus.MustNewConstMetric(storeDiskBytesDesc, prometheus.GaugeValue, float64(s.DiskBytes))
	}
	if c.src.Space != nil {
		sp := c.src.Space()
		full := 0.0
		if sp.State == api.SpaceFull {
			full = 1
		}
		ch <- prometheus.MustNewConstMetric(freeBytesDesc, prometheus.GaugeValue, float64(sp.FreeBytes))
		ch <- prometheus.MustNewConstMetric(reserveBytesDesc, prometheus.GaugeValue, float64(sp.ReserveBytes))
		ch <- prometheus.MustNewConstMetric(deviceFullDesc, prometheus.GaugeValue, full)
	}
	if c.src.Heal != nil {
		h := c.src.Heal()
		ch <- prometheus.MustNewConstMetric(healPendingDesc, prometheus.GaugeValue, float64(h.Pending))
		ch <- prometheus.MustNewConstMetric(healCopiedBlocksDesc, prometheus.CounterValue, float64(h.CopiedBlocks))
		ch <- prometheus.MustNewConstMetric(healCopiedBytesDesc, prometheus.CounterValue, float64(h.CopiedBytes))
		ch <- prometheus.MustNewConstMetric(healDroppedDesc, prometheus.CounterValue, float64(h.DroppedBlocks))
		ch <- prometheus.MustNewConstMetric(healPassesDesc, prometheus.CounterValue, float64(h.Passes))
	}
	if c.src.UnderReplicated != nil {
		if n, err := c.src.UnderReplicated(); err == nil {
			ch <- prometheus.MustNewConstMetric(healUnderDesc, prometheus.GaugeValue, float64(n))
		}
	}
	if c.src.Members != nil {
		byState := map[string]int{}
		for _, s := range memberStates {
			byState[s] = 0
		}
		for _, p := range c.src.Members() {
			byState[p.State]++
		}
		for s, n := range byState {
			ch <- prometheus.MustNewConstMetric(membersDesc, prometheus.GaugeValue, float64(n), s)
		}
	}
	if c.src.Transfers != nil {
		c.collectTransfers(ch, c.src.Transfers())
	}
}

func (c *sourceCollector) collectTransfers(ch chan<- prometheus.Metric, list []TransferInfo) {
	running := 0
	c.mu.Lock()
	seen := make(map[string]int64, len(list))
	for _, t := range list {
		if t.State == "running" {
			running++
		}
		if d := t.BytesSent - c.sent[t.ID]; d > 0 {
			c.sentTotal[t.Priority] += float64(d)
		}
		seen[t.ID] = max(t.BytesSent, c.sent[t.ID])
	}
	c.sent = seen
	for p, n := range c.sentTotal {
		ch <- prometheus.MustNewConstMetric(transferBytesDesc, prometheus.CounterValue, n, p)
	}
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(transfersRunningDesc, prometheus.GaugeValue, float64(running))
}

// nbdMetrics counts and times the NBD server's requests. It is the
// server's nbd.Observer: on the path of every request, so it resolves its
// series once, up front, and a request costs a map read and atomic adds.
type nbdMetrics struct {
	requests *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	ops      map[string]opMetrics // read-only after newNBDMetrics
}

// opMetrics are the series of one operation of the NBD or the iSCSI
// server.
type opMetrics struct {
	ok, failed, bytes prometheus.Counter
	latency           prometheus.Observer
}

func newNBDMetrics() *nbdMetrics {
	m := &nbdMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_nbd_requests_total",
			Help: "NBD requests served, by operation and result (ok or error; refusals are errors).",
		}, []string{"op", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_nbd_bytes_total",
			Help: "Bytes covered by NBD requests served without error, by operation.",
		}, []string{"op"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "weft_nbd_request_duration_seconds",
			Help: "Time the export took to serve NBD requests, by operation; refused requests count as 0.",
			// A page-cache read takes about 10µs, a flush to a slow disk
			// or a remote fetch up to a second. Written out rather than
			// computed so the le labels are round numbers.
			Buckets: []float64{
				10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
				1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3,
				100e-3, 250e-3, 500e-3, 1,
			},
		}, []string{"op"}),
		ops: map[string]opMetrics{},
	}
	for _, op := range []string{nbd.OpRead, nbd.OpWrite, nbd.OpFlush, nbd.OpTrim, nbd.OpWriteZeroes} {
		m.ops[op] = opMetrics{
			ok:      m.requests.WithLabelValues(op, "ok"),
			failed:  m.requests.WithLabelValues(op, "error"),
			bytes:   m.bytes.WithLabelValues(op),
			latency: m.latency.WithLabelValues(op),
		}
	}
	return m
}

// Request implements nbd.Observer.
func (m *nbdMetrics) Request(op string, bytes int, d time.Duration, err error) {
	o, ok := m.ops[op]
	if !ok {
		return
	}
	o.latency.Observe(d.Seconds())
	if err != nil {
		o.failed.Inc()
		return
	}
	o.ok.Inc()
	o.bytes.Add(float64(bytes))
}
