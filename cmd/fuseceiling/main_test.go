package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// TestCeilingFile checks what the benchmark relies on: the file has its
// size, takes writes anywhere inside it, reads zeros whatever was written,
// and the mount goes away when the context ends.
func TestCeilingFile(t *testing.T) {
	const size = 8 << 20
	dir, stop := mountCeiling(t, &root{size: size})

	path := filepath.Join(dir, fileName)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := f.Stat(); err != nil || st.Size() != size {
		t.Fatalf("stat: %v, size %d, want %d", err, st.Size(), size)
	}
	data := bytes.Repeat([]byte{0xa5}, 1<<20)
	if n, err := f.WriteAt(data, size-1<<20); err != nil || n != len(data) {
		t.Fatalf("write: %d, %v", n, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	if _, err := f.WriteAt(data, size); err == nil {
		t.Fatal("a write past the end succeeded")
	}
	if err := f.Truncate(size / 2); err == nil {
		t.Fatal("truncate succeeded")
	}
	f.Close()
	// A new open drops the page cache (no keep-cache), so this reads
	// from the server.
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != size || !bytes.Equal(got, make([]byte, size)) {
		t.Fatalf("read %d bytes, want %d zeros", len(got), size)
	}

	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("the file is still there after unmount")
	}
}

// mountCeiling serves r in a temporary directory; stop unmounts it and
// returns how serve ended. It is also called at the end of the test.
func mountCeiling(t *testing.T, r *root) (dir string, stop func() error) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("needs /dev/fuse: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("mounts with mount(2), which needs root")
	}
	dir = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- serve(ctx, dir, r, ready) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v", err)
	}
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				err = errors.New("serve did not return within 30s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return dir, stop
}

// overlapCounter records how many writes the server has at once.
type overlapCounter struct {
	mu             sync.Mutex
	inFlight, most int
}

// onWrite holds each write long enough for others to arrive.
func (c *overlapCounter) onWrite() {
	c.mu.Lock()
	c.inFlight++
	c.most = max(c.most, c.inFlight)
	c.mu.Unlock()
	time.Sleep(20 * time.Millisecond)
	c.mu.Lock()
	c.inFlight--
	c.mu.Unlock()
}

func (c *overlapCounter) peak() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.most
}

// TestAsyncDirectWritesOverlap checks that one thread's queue of
// asynchronous O_DIRECT writes (fio's libaio engine, as QEMU's
// aio=native) reaches the server at once, with weft's mount options: the
// kernel would otherwise send them one after the other.
func TestAsyncDirectWritesOverlap(t *testing.T) {
	fio, err := exec.LookPath("fio")
	if err != nil {
		t.Skip("needs fio (apt-get install fio)")
	}
	var c overlapCounter
	dir, _ := mountCeiling(t, &root{size: 4 << 20, onWrite: c.onWrite})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, fio, "--name=aio", "--filename="+filepath.Join(dir, fileName),
		"--ioengine=libaio", "--direct=1", "--iodepth=8", "--rw=randwrite", "--bs=64k", "--size=1M",
		"--numjobs=1").CombinedOutput()
	if err != nil {
		t.Fatalf("fio: %v\n%s", err, out)
	}
	if got := c.peak(); got < 2 {
		t.Fatalf("at most %d write of fio's queue of 8 reached the server at once, want them to overlap", got)
	}
}

// TestDirectWritesOverlap checks that O_DIRECT writes from several threads
// reach the server at the same time, with the open flags and mount options
// weft's disk files use (fusefs.OpenFlags, fusefs.MountOptions): a cached
// open would have the kernel send them one after the other.
func TestDirectWritesOverlap(t *testing.T) {
	var c overlapCounter
	const writers, chunk = 4, 64 << 10
	dir, _ := mountCeiling(t, &root{size: writers * chunk * 4, onWrite: c.onWrite})
	f, err := os.OpenFile(filepath.Join(dir, fileName), os.O_RDWR|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := alignedBuf(chunk)
			for i := range 4 {
				if _, err := f.WriteAt(buf, int64((w*4+i)*chunk)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("direct write: %v", err)
	}
	if got := c.peak(); got < 2 {
		t.Fatalf("at most %d O_DIRECT write reached the server at once from %d threads, want them to overlap", got, writers)
	}
}

// alignedBuf returns n bytes at a page boundary, as O_DIRECT wants.
func alignedBuf(n int) []byte {
	const page = 4096
	b := make([]byte, n+page)
	skip := (page - int(uintptr(unsafe.Pointer(&b[0]))%page)) % page
	return b[skip : skip+n : skip+n]
}
