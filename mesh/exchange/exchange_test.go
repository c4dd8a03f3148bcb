package exchange_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/mesh/exchange"
	"github.com/weft-mesh/weft/mesh/memnet"
)

var _ exchange.Dialer = (*memnet.Dialer)(nil)

// promptly bounds how long a call may take to notice a failure.
const promptly = 5 * time.Second

// pair is a client on peer "a" talking to a server on peer "b".
type pair struct {
	net    *memnet.Network
	client *exchange.Client
	server *exchange.Server
}

func newPair(t testing.TB, store exchange.Store) *pair {
	t.Helper()
	n := memnet.New()
	srv := &exchange.Server{Store: store}
	n.Listen("b", srv.ServeStream)
	cl := &exchange.Client{Dialer: n.Dialer("a")}
	t.Cleanup(func() {
		cl.Close()
		n.Close()
	})
	return &pair{net: n, client: cl, server: srv}
}

// randomBlocks returns n blocks of size random bytes from a seeded source.
func randomBlocks(t *testing.T, seed uint8, n, size int) []blockstore.Block {
	t.Helper()
	var key [32]byte
	key[0] = byte(seed)
	rng := rand.NewChaCha8(key)
	out := make([]blockstore.Block, n)
	for i := range out {
		data := make([]byte, size)
		rng.Read(data)
		out[i] = blockstore.NewBlock(blockstore.CodecRaw, data)
	}
	return out
}

func cidsOf(bs []blockstore.Block) []cid.Cid {
	out := make([]cid.Cid, len(bs))
	for i, b := range bs {
		out[i] = b.CID
	}
	return out
}

func storeWith(t *testing.T, bs []blockstore.Block) *blockstore.Memory {
	t.Helper()
	m := blockstore.NewMemory()
	if err := m.PutMany(context.Background(), bs); err != nil {
		t.Fatalf("PutMany: %v", err)
	}
	return m
}

func checkBlocks(t *testing.T, got map[cid.Cid]blockstore.Block, want []blockstore.Block) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d blocks, want %d", len(got), len(want))
	}
	for _, b := range want {
		if g := got[b.CID]; g.CID != b.CID || !bytes.Equal(g.Data, b.Data) {
			t.Fatalf("block %s: got %s, %d bytes that differ from the %d stored", b.CID, g.CID, len(g.Data), len(b.Data))
		}
	}
}

func TestHasGetPutRoundTrip(t *testing.T) {
	ctx := context.Background()
	held := randomBlocks(t, 1, 10, 4096)
	absent := randomBlocks(t, 2, 5, 4096)
	remote := storeWith(t, held)
	p := newPair(t, remote)

	asked := append(cidsOf(held[:3]), cidsOf(absent[:2])...)
	has, err := p.client.Has(ctx, "b", asked)
	if err != nil {
		t.Fatalf("Has: %v", err)
	}
	if want := []bool{true, true, true, false, false}; fmt.Sprint(has) != fmt.Sprint(want) {
		t.Fatalf("Has: got %v, want %v", has, want)
	}

	got, err := p.client.Get(ctx, "b", asked)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	checkBlocks(t, got, held[:3])

	if err := p.client.Put(ctx, "b", absent); err != nil {
		t.Fatalf("Put: %v", err)
	}
	for _, b := range absent {
		data, err := remote.Get(ctx, b.CID)
		if err != nil || !bytes.Equal(data, b.Data) {
			t.Fatalf("after Put, remote Get %s: err %v, equal %v", b.CID, err, bytes.Equal(data, b.Data))
		}
	}

	// Empty requests need no round trip and give empty answers.
	if has, err := p.client.Has(ctx, "b", nil); err != nil || len(has) != 0 {
		t.Fatalf("Has(nil): got %v, %v, want [], nil", has, err)
	}
	if got, err := p.client.Get(ctx, "b", nil); err != nil || len(got) != 0 {
		t.Fatalf("Get(nil): got %d blocks, %v, want 0, nil", len(got), err)
	}
}

func TestConcurrentCallsShareOneClient(t *testing.T) {
	held := randomBlocks(t, 3, 64, 1024)
	p := newPair(t, storeWith(t, held))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			want := held[i*4 : i*4+4]
			got, err := p.client.Get(context.Background(), "b", cidsOf(want))
			if err == nil && len(got) != len(want) {
				err = fmt.Errorf("got %d blocks, want %d", len(got), len(want))
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Get: %v", err)
		}
	}
}

func TestLargeGetAndPutSpanSeveralRoundTrips(t *testing.T) {
	ctx := context.Background()
	// 260 × 64 KiB is 16.25 MiB, over both the Get and the Put payload limit;
	// the maximum-size blocks make every round trip hold only three.
	blocks := append(randomBlocks(t, 4, 260, 64<<10), randomBlocks(t, 5, 4, blockstore.MaxBlockSize)...)
	remote := blockstore.NewMemory()
	p := newPair(t, remote)
	if err := p.client.Put(ctx, "b", blocks); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if st := remote.Stats(); st.Blocks != int64(len(blocks)) {
		t.Fatalf("remote holds %d blocks after Put, want %d", st.Blocks, len(blocks))
	}
	got, err := p.client.Get(ctx, "b", cidsOf(blocks))
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	checkBlocks(t, got, blocks)
}

func TestGetOfMoreThanMaxCIDs(t *testing.T) {
	held := randomBlocks(t, 6, exchange.MaxCIDs+10, 16)
	p := newPair(t, storeWith(t, held))
	got, err := p.client.Get(context.Background(), "b", cidsOf(held))
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	checkBlocks(t, got, held)
	has, err := p.client.Has(context.Background(), "b", cidsOf(held))
	if err != nil || len(has) != len(held) {
		t.Fatalf("Has: got %d answers, %v, want %d, nil", len(has), err, len(held))
	}
}

// lyingStore serves wrong bytes for one CID, as a buggy or hostile peer
// whose store does not verify would.
type lyingStore struct {
	*blockstore.Memory
	lie cid.Cid
}

func (s lyingStore) Get(ctx context.Context, c cid.Cid) ([]byte, error) {
	if c.Equals(s.lie) {
		return []byte("not what you asked for"), nil
	}
	return s.Memory.Get(ctx, c)
}

func TestGetOfBadBytesIsErrBadBlock(t *testing.T) {
	held := randomBlocks(t, 7, 4, 1024)
	p := newPair(t, lyingStore{Memory: storeWith(t, held), lie: held[2].CID})
	_, err := p.client.Get(context.Background(), "b", cidsOf(held))
	if !errors.Is(err, exchange.ErrBadBlock) {
		t.Fatalf("Get from lying peer: got %v, want ErrBadBlock", err)
	}
}

func TestCorruptBlockIsServedAsMissing(t *testing.T) {
	held := randomBlocks(t, 8, 3, 1024)
	remote := storeWith(t, held)
	if !remote.Corrupt(held[1].CID) {
		t.Fatalf("Corrupt %s: block absent", held[1].CID)
	}
	p := newPair(t, remote)
	got, err := p.client.Get(context.Background(), "b", cidsOf(held))
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	checkBlocks(t, got, []blockstore.Block{held[0], held[2]})
}

// fullStore refuses every put for lack of space.
type fullStore struct{ *blockstore.Memory }

func (fullStore) PutMany(ctx context.Context, bs []blockstore.Block) error {
	return fmt.Errorf("write segment: %w", blockstore.ErrNoSpace)
}

func TestRemoteNoSpaceIsErrNoSpace(t *testing.T) {
	blocks := randomBlocks(t, 9, 2, 1024)
	p := newPair(t, fullStore{blockstore.NewMemory()})
	err := p.client.Put(context.Background(), "b", blocks)
	if !errors.Is(err, blockstore.ErrNoSpace) || !errors.Is(err, exchange.ErrRemote) {
		t.Fatalf("Put to full peer: got %v, want ErrNoSpace and ErrRemote", err)
	}

	// Accept refusing has the same effect, and the stream stays usable.
	p = newPair(t, blockstore.NewMemory())
	p.server.Accept = func(peer string, n int, bytes int64) (func(), error) {
		if peer != "a" || n != len(blocks) || bytes != 2048 {
			return nil, fmt.Errorf("accept got (%s, %d, %d), want (a, %d, 2048)", peer, n, bytes, len(blocks))
		}
		return nil, blockstore.ErrNoSpace
	}
	if err := p.client.Put(context.Background(), "b", blocks); !errors.Is(err, blockstore.ErrNoSpace) {
		t.Fatalf("Put refused by Accept: got %v, want ErrNoSpace", err)
	}
	if _, err := p.client.Has(context.Background(), "b", cidsOf(blocks)); err != nil {
		t.Fatalf("Has after refused Put: %v", err)
	}

	// An accepted put is released once the store's put has returned.
	var released bool
	p.server.Accept = func(string, int, int64) (func(), error) {
		return func() { released = true }, nil
	}
	if err := p.client.Put(context.Background(), "b", blocks); err != nil || !released {
		t.Fatalf("accepted Put: %v, released %v; want stored and released", err, released)
	}
}

func TestPutOfBadBlockIsRefused(t *testing.T) {
	good := randomBlocks(t, 10, 2, 1024)
	remote := blockstore.NewMemory()
	p := newPair(t, remote)
	bad := blockstore.Block{CID: good[0].CID, Data: good[1].Data}
	err := p.client.Put(context.Background(), "b", []blockstore.Block{good[1], bad})
	if !errors.Is(err, blockstore.ErrCorrupt) || !errors.Is(err, exchange.ErrRemote) {
		t.Fatalf("Put of a bad block: got %v, want ErrCorrupt and ErrRemote", err)
	}
	if st := remote.Stats(); st.Blocks != 0 {
		t.Fatalf("remote holds %d blocks after a refused Put, want 0", st.Blocks)
	}
}

// stallingStore blocks every Get until the test ends, as a peer whose disk
// hangs would.
type stallingStore struct {
	*blockstore.Memory
	entered chan struct{} // receives once per Get
	release chan struct{} // closed when the test ends
}

func newStallingStore() *stallingStore {
	return &stallingStore{Memory: blockstore.NewMemory(), entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (s *stallingStore) Get(ctx context.Context, c cid.Cid) ([]byte, error) {
	s.entered <- struct{}{}
	<-s.release
	return nil, blockstore.ErrNotFound
}

// getAsync starts a Get of one random CID and returns where its error lands.
func getAsync(ctx context.Context, t *testing.T, c *exchange.Client) <-chan error {
	done := make(chan error, 1)
	want := randomBlocks(t, 11, 1, 16)
	go func() {
		_, err := c.Get(ctx, "b", cidsOf(want))
		done <- err
	}()
	return done
}

func waitErr(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(promptly):
		t.Fatalf("call still blocked after %v", promptly)
		return nil
	}
}

func TestCutMidRequestFailsPromptly(t *testing.T) {
	store := newStallingStore()
	p := newPair(t, store)
	t.Cleanup(func() { close(store.release) }) // before the network closes
	done := getAsync(context.Background(), t, p.client)
	<-store.entered
	p.net.Cut("a", "b")
	if err := waitErr(t, done); !errors.Is(err, memnet.ErrLinkDown) {
		t.Fatalf("Get across a cut: got %v, want ErrLinkDown", err)
	}
}

func TestCancelUnblocksCall(t *testing.T) {
	store := newStallingStore()
	p := newPair(t, store)
	t.Cleanup(func() { close(store.release) })
	ctx, cancel := context.WithCancel(context.Background())
	done := getAsync(ctx, t, p.client)
	<-store.entered
	cancel()
	if err := waitErr(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Get: got %v, want context.Canceled", err)
	}
}

func TestPooledStreamToRestartedPeerIsRetried(t *testing.T) {
	held := randomBlocks(t, 12, 1, 16)
	p := newPair(t, storeWith(t, held))
	if _, err := p.client.Has(context.Background(), "b", cidsOf(held)); err != nil {
		t.Fatalf("Has: %v", err)
	}
	// The idle stream breaks while pooled; the next call must not fail for it.
	p.net.Down("b")
	p.net.Up("b")
	has, err := p.client.Has(context.Background(), "b", cidsOf(held))
	if err != nil || !has[0] {
		t.Fatalf("Has after restart: got %v, %v, want [true], nil", has, err)
	}
}

func TestUnreachablePeer(t *testing.T) {
	p := newPair(t, blockstore.NewMemory())
	p.net.Down("b")
	_, err := p.client.Has(context.Background(), "b", cidsOf(randomBlocks(t, 13, 1, 16)))
	if !errors.Is(err, memnet.ErrUnreachable) {
		t.Fatalf("Has of down peer: got %v, want ErrUnreachable", err)
	}
}

func TestClientRefusesForeignCIDs(t *testing.T) {
	p := newPair(t, blockstore.NewMemory())
	v0, err := cid.Decode("QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n")
	if err != nil {
		t.Fatalf("decode CIDv0: %v", err)
	}
	if _, err := p.client.Get(context.Background(), "b", []cid.Cid{v0}); err == nil {
		t.Fatal("Get of a CIDv0: got nil error, want refusal")
	}
}

// TestGetsFromADiskStoreBackToBack fetches batches of different sizes one
// after another from a server on a blockstore.Disk, which reads each
// response's blocks into a pooled buffer without hashing them again, and
// checks every batch still holds its blocks once all have arrived.
func TestGetsFromADiskStoreBackToBack(t *testing.T) {
	ctx := context.Background()
	d, err := blockstore.Open(t.TempDir(), blockstore.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	p := newPair(t, d)
	var batches [][]blockstore.Block
	var got []map[cid.Cid]blockstore.Block
	for i, shape := range []struct{ n, size int }{{300, 64 << 10}, {3, 10}, {40, 256 << 10}, {1, 1 << 20}} {
		bs := randomBlocks(t, uint8(i+1), shape.n, shape.size)
		if err := d.PutMany(ctx, bs); err != nil {
			t.Fatal(err)
		}
		m, err := p.client.Get(ctx, "b", cidsOf(bs))
		if err != nil {
			t.Fatalf("get of %d blocks of %d bytes: %v", shape.n, shape.size, err)
		}
		batches = append(batches, bs)
		got = append(got, m)
	}
	for i := range batches {
		checkBlocks(t, got[i], batches[i])
	}
}

// TestGetEachReusesFrames fetches a few MiB over and over with GetEach:
// every block arrives verified, and once the stream's frame buffer has
// grown, the responses are read into it rather than into fresh memory.
func TestGetEachReusesFrames(t *testing.T) {
	blocks := randomBlocks(t, 21, 64, 64<<10) // 4 MiB in one response
	p := newPair(t, storeWith(t, blocks))
	ctx := context.Background()
	fetch := func() {
		t.Helper()
		got := make(map[cid.Cid]blockstore.Block)
		err := p.client.GetEach(ctx, "b", cidsOf(blocks), func(bs []blockstore.Block) error {
			for _, b := range bs {
				got[b.CID] = blockstore.Block{CID: b.CID, Data: bytes.Clone(b.Data)}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("GetEach: %v", err)
		}
		checkBlocks(t, got, blocks)
	}
	// Pooled buffers only grow: after a few rounds every idle one is
	// large enough for any frame of these.
	for range 10 {
		fetch()
	}
	const rounds = 4
	allocated := func(get func() error) uint64 {
		t.Helper()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range rounds {
			if err := get(); err != nil {
				t.Fatal(err)
			}
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	each := allocated(func() error {
		return p.client.GetEach(ctx, "b", cidsOf(blocks), func([]blockstore.Block) error { return nil })
	})
	owned := allocated(func() error {
		_, err := p.client.Get(ctx, "b", cidsOf(blocks))
		return err
	})
	// The server, its store and the in-memory pipe allocate the same in
	// both; Get reads every 4 MiB response into a buffer of its own.
	t.Logf("allocated %d bytes with GetEach, %d with Get", each, owned)
	if owned < each+rounds*3<<20 {
		t.Fatalf("GetEach allocated %d bytes, Get %d: want GetEach's responses read into reused buffers", each, owned)
	}
	fetch()
}

// TestGetEachStopsOnError returns fn's error as it is and stops there.
func TestGetEachStopsOnError(t *testing.T) {
	blocks := randomBlocks(t, 22, 5, 4<<20) // 20 MiB: more than one response
	p := newPair(t, storeWith(t, blocks))
	stop := errors.New("stop")
	calls := 0
	err := p.client.GetEach(context.Background(), "b", cidsOf(blocks), func([]blockstore.Block) error {
		calls++
		return stop
	})
	if err != stop || calls != 1 {
		t.Fatalf("got %v after %d calls, want the error of fn after 1", err, calls)
	}
}

// hasCountingStore counts the presence lookups the server makes.
type hasCountingStore struct {
	*blockstore.Memory
	has, hasMany atomic.Int64
}

func (s *hasCountingStore) Has(ctx context.Context, c cid.Cid) (bool, error) {
	s.has.Add(1)
	return s.Memory.Has(ctx, c)
}

func (s *hasCountingStore) HasMany(ctx context.Context, cids []cid.Cid) ([]bool, error) {
	s.hasMany.Add(1)
	return s.Memory.HasMany(ctx, cids)
}

// TestHasAnsweredInOneStorePass: a has request (heal asks one of every
// block of the catalog on every pass) is answered with one HasMany of the
// store, not a Has per CID, and answers as Has would.
func TestHasAnsweredInOneStorePass(t *testing.T) {
	held := randomBlocks(t, 3, 50, 256)
	absent := randomBlocks(t, 4, 50, 256)
	store := &hasCountingStore{Memory: storeWith(t, held)}
	p := newPair(t, store)
	asked := append(cidsOf(absent[:25]), append(cidsOf(held), cidsOf(absent[25:])...)...)
	has, err := p.client.Has(context.Background(), "b", asked)
	if err != nil {
		t.Fatalf("Has: %v", err)
	}
	for i, ok := range has {
		if want := i >= 25 && i < 75; ok != want {
			t.Fatalf("Has: CID %d present = %v, want %v", i, ok, want)
		}
	}
	if store.has.Load() != 0 || store.hasMany.Load() != 1 {
		t.Fatalf("one has request of %d CIDs made %d Has and %d HasMany calls, want 0 and 1", len(asked), store.has.Load(), store.hasMany.Load())
	}
}
