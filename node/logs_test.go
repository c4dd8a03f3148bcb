package node

import (
	"bytes"
	"context"
	"github.com/weft-mesh/weft/api"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// lockedBuffer is a bytes.Buffer that a logger and the test share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLogsDoNotRepeatAttributes: every line a node logs (the node, the
// block store, the mesh, memberlist, NBD, volumes) names its node and its
// component once each.
func TestLogsDoNotRepeatAttributes(t *testing.T) {
	var logs lockedBuffer
	cl, _ := startNodeWith(t, func(c *Config) {
		c.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	if _, err := cl.CreateDisk(context.Background(), api.DiskSpec{Name: "d", Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	components := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		for _, key := range []string{" component=", " node="} {
			if n := strings.Count(line, key); n != 1 {
				t.Errorf("%d times %q in log line %s", n, strings.TrimSpace(key), line)
			}
		}
		if _, rest, ok := strings.Cut(line, " component="); ok {
			components[strings.Fields(rest)[0]] = true
		}
	}
	for _, c := range []string{"node", "blockstore", "mesh", "nbd"} {
		if !components[c] {
			t.Errorf("no log line of component %s; got %v", c, components)
		}
	}
}
