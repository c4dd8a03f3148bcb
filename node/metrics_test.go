package node

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/heal"
	"github.com/weft-mesh/weft/node/nbd"
)

// scrape fetches m's metrics in the text format and returns their sample
// lines, comments left out.
func scrape(t *testing.T, m *nodeMetrics) map[string]bool {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: got status %d, want 200: %s", resp.StatusCode, body)
	}
	lines := map[string]bool{}
	for l := range strings.SplitSeq(string(body), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			lines[l] = true
		}
	}
	return lines
}

func wantLines(t *testing.T, got map[string]bool, want ...string) {
	t.Helper()
	for _, w := range want {
		if !got[w] {
			t.Errorf("got no line %q", w)
		}
	}
}

func TestMetrics(t *testing.T) {
	var mu sync.Mutex
	transfers := []TransferInfo{
		{ID: "a", State: "running", Priority: "high", BytesSent: 1000},
		{ID: "b", State: "done", Priority: "high", BytesSent: 500},
		{ID: "c", State: "running", Priority: "very-low", BytesSent: 7},
	}
	m := newNodeMetrics(metricsSources{
		Store: func() blockstore.Stats { return blockstore.Stats{Blocks: 42, Bytes: 42 << 20, DiskBytes: 50 << 20} },
		Heal: func() heal.Status {
			return heal.Status{Pending: 2, CopiedBlocks: 10, CopiedBytes: 4096, DroppedBlocks: 1, Passes: 5}
		},
		Members: func() []Peer {
			return []Peer{{State: "alive"}, {State: "alive"}, {State: "dead"}}
		},
		UnderReplicated: func() (int64, error) { return 3, nil },
		Space: func() SpaceStatus {
			return SpaceStatus{FreeBytes: 1 << 20, ReserveBytes: 256 << 20, State: api.SpaceFull}
		},
		Transfers: func() []TransferInfo {
			mu.Lock()
			defer mu.Unlock()
			return append([]TransferInfo(nil), transfers...)
		},
	})
	obs := m.NBD()
	obs.Request(nbd.OpRead, 4096, 50*time.Microsecond, nil)
	obs.Request(nbd.OpRead, 4096, 2*time.Millisecond, nil)
	obs.Request(nbd.OpWrite, 512, 0, nbd.ErrReadOnly)

	got := scrape(t, m)
	wantLines(t, got,
		"weft_blockstore_blocks 42",
		"weft_blockstore_bytes 4.4040192e+07",
		"weft_blockstore_disk_bytes 5.24288e+07",
		"weft_node_free_bytes 1.048576e+06",
		"weft_node_reserve_bytes 2.68435456e+08",
		"weft_node_device_full 1",
		"weft_heal_under_replicated_blocks 3",
		"weft_heal_pending_blocks 2",
		"weft_heal_copied_blocks_total 10",
		"weft_heal_copied_bytes_total 4096",
		"weft_heal_dropped_blocks_total 1",
		"weft_heal_passes_total 5",
		`weft_mesh_members{state="alive"} 2`,
		`weft_mesh_members{state="dead"} 1`,
		`weft_mesh_members{state="left"} 0`,
		`weft_transfer_sent_bytes_total{priority="high"} 1500`,
		`weft_transfer_sent_bytes_total{priority="very-low"} 7`,
		`weft_transfer_sent_bytes_total{priority="normal"} 0`,
		"weft_transfer_running 2",
		`weft_nbd_requests_total{op="read",result="ok"} 2`,
		`weft_nbd_requests_total{op="read",result="error"} 0`,
		`weft_nbd_requests_total{op="write",result="error"} 1`,
		`weft_nbd_requests_total{op="trim",result="ok"} 0`,
		`weft_nbd_bytes_total{op="read"} 8192`,
		`weft_nbd_bytes_total{op="write"} 0`,
		`weft_nbd_request_duration_seconds_count{op="read"} 2`,
		`weft_nbd_request_duration_seconds_bucket{op="read",le="1e-05"} 0`,
		`weft_nbd_request_duration_seconds_bucket{op="read",le="0.0001"} 1`,
		`weft_nbd_request_duration_seconds_bucket{op="read",le="+Inf"} 2`,
		`weft_nbd_request_duration_seconds_sum{op="read"} 0.00205`,
		`weft_nbd_request_duration_seconds_count{op="write"} 1`,
	)

	// A running transfer goes on, the finished one is forgotten: the
	// counter keeps what the forgotten one sent and adds the progress.
	mu.Lock()
	transfers = []TransferInfo{{ID: "a", State: "done", Priority: "high", BytesSent: 1200}}
	mu.Unlock()
	got = scrape(t, m)
	wantLines(t, got,
		`weft_transfer_sent_bytes_total{priority="high"} 1700`,
		`weft_transfer_sent_bytes_total{priority="very-low"} 7`,
		"weft_transfer_running 0",
	)
}

// TestMetricsWithoutMesh: a node without a mesh has no heal, members or
// transfers, and its scrape leaves them out rather than failing.
func TestMetricsWithoutMesh(t *testing.T) {
	m := newNodeMetrics(metricsSources{
		Store: func() blockstore.Stats { return blockstore.Stats{Blocks: 1} },
	})
	m.NBD().Request("unknown", 1, time.Millisecond, errors.New("ignored"))
	got := scrape(t, m)
	wantLines(t, got, "weft_blockstore_blocks 1", `weft_nbd_requests_total{op="flush",result="ok"} 0`)
	for l := range got {
		for _, absent := range []string{"weft_heal_", "weft_mesh_", "weft_transfer_", `op="unknown"`} {
			if strings.Contains(l, absent) {
				t.Errorf("got line %q, want no %s metric without a mesh", l, absent)
			}
		}
	}
}

// TestMetricsRegistryPerNode: two nodes in one process keep their metrics
// apart (a shared or global registry would panic or mix them).
func TestMetricsRegistryPerNode(t *testing.T) {
	a := newNodeMetrics(metricsSources{})
	b := newNodeMetrics(metricsSources{})
	a.NBD().Request(nbd.OpFlush, 0, time.Millisecond, nil)
	wantLines(t, scrape(t, a), `weft_nbd_requests_total{op="flush",result="ok"} 1`)
	wantLines(t, scrape(t, b), `weft_nbd_requests_total{op="flush",result="ok"} 0`)
}
