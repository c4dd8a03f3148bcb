package volume

import (
	"context"
	"fmt"
	"runtime"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/weft-mesh/weft/blockmap"
)

// View is a read-only, consistent image of a disk head or replica at one
// root. Its blocks are held against GC until Close. Safe for concurrent
// use.
type View struct {
	m         *Manager
	ref       Ref
	root      cid.Cid
	size      int64
	blockSize int64
	levels    int
	release   func()
}

// OpenView opens a view of ref. A view of a head commits the head first, so
// it shows every write that returned before the call.
func (m *Manager) OpenView(ctx context.Context, ref Ref) (*View, error) {
	root, size, bs, _, release, err := m.pinRef(ctx, ref)
	if err != nil {
		return nil, err
	}
	return &View{
		m: m, ref: ref, root: root, size: size, blockSize: bs,
		levels: blockmap.Levels(uint64(size / bs)), release: release,
	}, nil
}

// OpenRootView opens a view of any root, such as a disk or replica another
// node of the mesh published; label names it in errors. The root is held
// against GC until Close. Blocks that are not local are fetched through the
// store.
func (m *Manager) OpenRootView(label string, root cid.Cid, size, blockSize int64) (*View, error) {
	if _, err := checkSpec(DiskSpec{Name: "view", Size: size, BlockSize: blockSize}); err != nil || size%blockSize != 0 {
		return nil, fmt.Errorf("%s: size %d, block size %d: %w", label, size, blockSize, ErrInvalid)
	}
	m.mu.Lock()
	m.pins[root]++
	m.mu.Unlock()
	var once sync.Once
	release := func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.pins[root]--; m.pins[root] <= 0 {
				delete(m.pins, root)
			}
		})
	}
	return &View{
		m: m, ref: Ref{Disk: label}, root: root, size: size, blockSize: blockSize,
		levels: blockmap.Levels(uint64(size / blockSize)), release: release,
	}, nil
}

// Size returns the image's size in bytes.
func (v *View) Size() int64 { return v.size }

// BlockSize returns the image's block size in bytes.
func (v *View) BlockSize() int64 { return v.blockSize }

// Root returns the root the view reads (cid.Undef when the image is empty).
func (v *View) Root() cid.Cid { return v.root }

// Close releases the view's hold on its root.
func (v *View) Close() error {
	v.release()
	return nil
}

// ReadAt reads len(p) bytes at off.
func (v *View) ReadAt(p []byte, off int64) (int, error) {
	if _, err := v.read(context.Background(), p, off, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// ReadShared is Head.ReadShared for the view.
func (v *View) ReadShared(ctx context.Context, p []byte, off int64) ([][]byte, error) {
	reads, err := v.read(ctx, p, off, true)
	if err != nil {
		return nil, err
	}
	return readSlices(reads), nil
}

func (v *View) read(ctx context.Context, p []byte, off int64, shared bool) ([]blockRead, error) {
	if off < 0 || off+int64(len(p)) > v.size {
		return nil, fmt.Errorf("%s: range %d+%d outside %d bytes: %w", v.ref, off, len(p), v.size, ErrInvalid)
	}
	reads := splitRead(p, off, v.blockSize, shared)
	ptrs := make([]*blockRead, len(reads))
	for k := range reads {
		ptrs[k] = &reads[k]
	}
	if len(ptrs) > 0 {
		if err := v.m.readCommittedBlocks(ctx, v.root, v.levels, ptrs); err != nil {
			return nil, fmt.Errorf("%s: %w", v.ref, err)
		}
	}
	return reads, nil
}

// appendGetter is a store that reads a block, verified, appended to dst
// (blockstore.Disk), so that a whole-disk read reuses its buffers.
type appendGetter interface {
	GetAppend(ctx context.Context, c cid.Cid, dst []byte) ([]byte, error)
}

// BlockBuffers is a bounded free list of block buffers for ForEachBlock,
// which reads each block into one taken from it (a fresh one when none is
// free, so a caller that holds many never stalls the read), and whose
// caller gives each back with Put once done with its bytes: a whole-disk
// export reuses a few MiB instead of allocating the disk's size. Safe for
// concurrent use; a nil *BlockBuffers gives fresh buffers and drops Puts.
type BlockBuffers struct{ free chan []byte }

// NewBlockBuffers returns a free list that keeps up to n buffers.
func NewBlockBuffers(n int) *BlockBuffers { return &BlockBuffers{free: make(chan []byte, n)} }

// take returns an empty buffer to append a block to, or nil.
func (b *BlockBuffers) take() []byte {
	if b == nil {
		return nil
	}
	select {
	case p := <-b.free:
		return p[:0]
	default:
		return nil
	}
}

// Put gives p back; the caller must not use it afterwards.
func (b *BlockBuffers) Put(p []byte) {
	if b == nil || cap(p) == 0 {
		return
	}
	select {
	case b.free <- p:
	default:
	}
}

// ForEachBlock calls fn for every non-zero block in ascending offset order.
// data is fn's to keep until it gives it back to bufs (the daemon's export
// writes blocks after fn returned): each block is read into a buffer of its
// own, taken from bufs. Blocks are fetched and verified ahead of fn on
// every core: every block fn gets was hashed against its CID as it was
// read (not trusted from an earlier hash: an export's file has no
// receiver that would catch a block rotted on disk since).
func (v *View) ForEachBlock(ctx context.Context, bufs *BlockBuffers, fn func(off int64, data []byte) error) error {
	type fetch struct {
		index uint64
		c     cid.Cid
		data  []byte
		err   error
		done  chan struct{}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Straight from the store, not the read cache: a whole-disk scan would
	// only evict what VMs are using.
	get := v.m.store.Get
	if ag, ok := v.m.store.(appendGetter); ok {
		get = func(ctx context.Context, c cid.Cid) ([]byte, error) { return ag.GetAppend(ctx, c, bufs.take()) }
	}
	workers := runtime.GOMAXPROCS(0)
	jobs := make(chan *fetch)
	ordered := make(chan *fetch, workers*8) // bounds read-ahead
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range jobs {
				f.data, f.err = get(ctx, f.c)
				close(f.done)
			}
		}()
	}
	walkErr := make(chan error, 1)
	go func() {
		defer close(ordered)
		defer close(jobs)
		walkErr <- v.m.maps.Walk(ctx, v.root, v.levels, 0, uint64(v.size/v.blockSize), func(i uint64, c cid.Cid) error {
			f := &fetch{index: i, c: c, done: make(chan struct{})}
			select {
			case ordered <- f:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case jobs <- f:
			case <-ctx.Done():
				return ctx.Err()
			}
			return nil
		})
	}()
	var err error
	for f := range ordered {
		if err != nil {
			continue // drain so the walker can finish
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			err = ctx.Err()
			cancel()
			continue
		}
		if f.err != nil {
			err = fmt.Errorf("%s: block %d: %w", v.ref, f.index, f.err)
		} else {
			err = fn(int64(f.index)*v.blockSize, f.data)
		}
		if err != nil {
			cancel()
		}
	}
	wg.Wait()
	if err != nil {
		return err
	}
	if werr := <-walkErr; werr != nil {
		return fmt.Errorf("%s: %w", v.ref, werr)
	}
	return nil
}
