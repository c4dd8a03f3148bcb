// Package memnettest builds in-memory block meshes for tests: memory
// stores served with the real block exchange over a memnet.Network. It
// imports testing, so only tests use it.
package memnettest

import (
	"context"
	"io"
	"sync"
	"testing"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/internal/peerlimit"
	"github.com/weft-mesh/weft/mesh/exchange"
	"github.com/weft-mesh/weft/mesh/memnet"
)

// Mesh is an in-memory mesh of nodes named by string, each with a memory
// store served by the block exchange and a client to reach the others.
// Stores and Clients are filled by Add; read them once the nodes are added.
type Mesh struct {
	Net     *memnet.Network
	mu      sync.Mutex
	Stores  map[string]*blockstore.Memory
	Clients map[string]*exchange.Client
}

// New returns an empty mesh, closed (clients, network, then stores) when
// tb's test ends.
func New(tb testing.TB) *Mesh {
	tb.Helper()
	m := &Mesh{Net: memnet.New(), Stores: map[string]*blockstore.Memory{}, Clients: map[string]*exchange.Client{}}
	tb.Cleanup(func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, c := range m.Clients {
			c.Close()
		}
		m.Net.Close()
		for _, s := range m.Stores {
			s.Close()
		}
	})
	return m
}

// Add starts node id serving its new memory store, or what serve wraps
// around it (serve may be nil), and returns the store.
func (m *Mesh) Add(id string, serve func(*blockstore.Memory) exchange.Store) *blockstore.Memory {
	store := blockstore.NewMemory()
	var served exchange.Store = store
	if serve != nil {
		served = serve(store)
	}
	srv := NodeServer(served)
	m.Net.Listen(id, func(ctx context.Context, from string, rw io.ReadWriteCloser) { srv.ServeStream(ctx, from, rw) })
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Stores[id] = store
	m.Clients[id] = &exchange.Client{Dialer: m.Net.Dialer(id)}
	return store
}

// NodeServer returns the block exchange server of one node serving store,
// with a frame budget of its own, as a node has: the process-wide default
// budget would be shared by every node of every test, and a test in a
// synctest bubble must not wait on a semaphore another bubble releases.
func NodeServer(store exchange.Store) *exchange.Server {
	return &exchange.Server{Store: store, Frames: peerlimit.NewBytes(exchange.DefaultFrameBudget)}
}
