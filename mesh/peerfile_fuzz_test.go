package mesh

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzOpenPeerFile opens a peers.json a crash or an operator may have
// left in any state: whatever it holds, opening does not panic, and the
// peers it lists are saved and read back sorted.
func FuzzOpenPeerFile(f *testing.F) {
	f.Add([]byte(`{"peers":["/ip4/127.0.0.2/tcp/4001/p2p/12D3KooWJ34PJdu1kw5pBYKcPoGnuu4pfUDwK92YBa17Pvp2a8j6"]}`))
	f.Add([]byte(`{"peers":["/ip4/10.0.0.2/udp/4001/quic-v1/p2p/12D3KooWJ34PJdu1kw5pBYKcPoGnuu4pfUDwK92YBa17Pvp2a8j6","/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWJ34PJdu1kw5pBYKcPoGnuu4pfUDwK92YBa17Pvp2a8j6"]}`))
	f.Add([]byte(`{"peers":[]}`))
	f.Add([]byte(`{"peers":null}`))
	f.Add([]byte(`{"peers":"/ip4/127.0.0.2/tcp/4001"}`))
	f.Add([]byte(`{"peers":[`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, peerFileName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		pf, err := openPeerFile(dir)
		if err != nil {
			return
		}
		peers := pf.list()
		if err := pf.save(pf.list()); err != nil {
			t.Fatal(err)
		}
		again, err := openPeerFile(dir)
		if err != nil {
			t.Fatalf("saved peers do not open: %v", err)
		}
		slices.Sort(peers)
		if !slices.Equal(again.list(), peers) {
			t.Fatalf("peers round trip: got %q, want %q", again.list(), peers)
		}
	})
}
