package mesh

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"
)

func TestStressAdmitPairs(t *testing.T) {
	secret := newSecret(t)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	const pairs = 8
	var wg sync.WaitGroup
	var ms [][2]*Mesh
	for range pairs {
		a := NewTestMesh(t, Config{Secret: secret, Site: "a", Logger: log.With("side", "a")})
		b := NewTestMesh(t, Config{Secret: secret, Site: "b", Logger: log.With("side", "b")})
		ms = append(ms, [2]*Mesh{a, b})
	}
	for _, p := range ms {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if n, err := p[1].Join(ctx, p[0].Addrs()); err != nil {
				t.Errorf("join: %d %v (a=%s b=%s)", n, err, p[0].ID(), p[1].ID())
			}
		})
	}
	wg.Wait()
}
