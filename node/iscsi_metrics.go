package node

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// iscsiMetrics counts the iSCSI target's logins and commands and gauges
// the command data it holds: the server's iscsi.Observer, with its series
// resolved up front as nbdMetrics does.
type iscsiMetrics struct {
	logins   *prometheus.CounterVec
	commands *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	buffered prometheus.Gauge
	ops      map[string]opMetrics // read-only after newISCSIMetrics
}

func newISCSIMetrics() *iscsiMetrics {
	m := &iscsiMetrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_iscsi_logins_total",
			Help: "iSCSI logins, by result (ok, auth: CHAP failed, authz: not allowed, not_found, error).",
		}, []string{"result"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_iscsi_commands_total",
			Help: "SCSI commands served over iSCSI, by kind (read, write, other) and result (ok, or error: CHECK CONDITION).",
		}, []string{"op", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_iscsi_bytes_total",
			Help: "Bytes moved by SCSI commands served over iSCSI without error, by kind.",
		}, []string{"op"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "weft_iscsi_command_duration_seconds",
			Help:    "Time the logical unit took to run SCSI commands, by kind.",
			Buckets: []float64{10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1},
		}, []string{"op"}),
		buffered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_iscsi_buffer_bytes",
			Help: "Command data the iSCSI target holds (writes' data-out, reads' data-in), at most its server-wide cap.",
		}),
		ops: map[string]opMetrics{},
	}
	for _, op := range []string{"read", "write", "other"} {
		m.ops[op] = opMetrics{
			ok:      m.commands.WithLabelValues(op, "ok"),
			failed:  m.commands.WithLabelValues(op, "error"),
			bytes:   m.bytes.WithLabelValues(op),
			latency: m.latency.WithLabelValues(op),
		}
	}
	return m
}

// Login implements iscsi.Observer.
func (m *iscsiMetrics) Login(result string) { m.logins.WithLabelValues(result).Inc() }

// Command implements iscsi.Observer.
func (m *iscsiMetrics) Command(op string, bytes int, d time.Duration, ok bool) {
	o, found := m.ops[op]
	if !found {
		return
	}
	o.latency.Observe(d.Seconds())
	if !ok {
		o.failed.Inc()
		return
	}
	o.ok.Inc()
	o.bytes.Add(float64(bytes))
}

// Buffer implements iscsi.Observer.
func (m *iscsiMetrics) Buffer(delta int64) { m.buffered.Add(float64(delta)) }
