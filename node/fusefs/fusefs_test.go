package fusefs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/weft-mesh/weft/blockstore"
	"github.com/weft-mesh/weft/volume"
)

const testBS = 4096

// testMount opens a volume manager over a memory block store and mounts it
// in a temporary directory; both go away with the test.
func testMount(t *testing.T) (*volume.Manager, *Mount) {
	t.Helper()
	return testMountWith(t, nil)
}

// testMountWith is testMount with set, if not nil, changing the mount's
// Config first.
func testMountWith(t *testing.T, set func(*Config, *volume.Manager)) (*volume.Manager, *Mount) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("FUSE mount test needs /dev/fuse: %v", err)
	}
	ctx := context.Background()
	vcfg := volume.DefaultConfig()
	vcfg.Dir, vcfg.Store, vcfg.CommitInterval = t.TempDir(), blockstore.NewMemory(), 0
	vols, err := volume.Open(ctx, vcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vols.Close() })
	cfg := DefaultConfig()
	cfg.Volumes = vols
	if set != nil {
		set(&cfg, vols)
	}
	dir := t.TempDir()
	m, err := New(ctx, dir, cfg)
	if err != nil {
		if os.Geteuid() != 0 {
			t.Skipf("FUSE mount test needs root or fusermount3: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(false); err != nil {
			t.Errorf("unmount: %v", err)
			m.Unmount(true)
		}
	})
	return vols, m
}

func createDisk(t *testing.T, vols *volume.Manager, name string, size int64) {
	t.Helper()
	if _, err := vols.CreateDisk(context.Background(), volume.DiskSpec{Name: name, Size: size, BlockSize: testBS}); err != nil {
		t.Fatal(err)
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// writeFile writes data at the start of an existing file (disk files
// refuse O_TRUNC, so os.WriteFile would fail).
func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func wantErrno(t *testing.T, what string, err error, want syscall.Errno) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func TestDiskFileReadWriteFsync(t *testing.T) {
	vols, m := testMount(t)
	const size = 1 << 20
	createDisk(t, vols, "a", size)
	if got, want := readDir(t, m.Dir()), []string{"a.img", "replicas", "spacesuits"}; !slices.Equal(got, want) {
		t.Fatalf("root lists %q, want %q", got, want)
	}
	p := filepath.Join(m.Dir(), "a.img")
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != size || st.Mode().Perm() != 0o644 {
		t.Fatalf("a.img: size %d mode %v, want %d -rw-r--r--", st.Size(), st.Mode(), size)
	}

	rng := rand.New(rand.NewPCG(1, 2))
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Unaligned, spanning blocks, and a large one that needs several
	// requests.
	writes := []struct{ off, n int }{{100, 10}, {testBS - 7, 3 * testBS}, {64 << 10, 700 << 10}, {size - 5, 5}}
	want := make([]byte, size)
	for _, w := range writes {
		b := randBytes(rng, w.n)
		if _, err := f.WriteAt(b, int64(w.off)); err != nil {
			t.Fatalf("write %d+%d: %v", w.off, w.n, err)
		}
		copy(want[w.off:], b)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	got := make([]byte, size)
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("read through the file differs from what was written")
	}
	h, err := vols.Head("a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the head differs from what was written through the file")
	}

	_, err = f.WriteAt([]byte{1}, size)
	wantErrno(t, "write at the end", err, syscall.EFBIG)
	wantErrno(t, "truncate", f.Truncate(size/2), syscall.EPERM)
	wantErrno(t, "grow", os.Truncate(p, 2*size), syscall.EPERM)
	if err := f.Truncate(size); err != nil {
		t.Fatalf("truncate to the same size: got %v, want success", err)
	}
	_, err = os.OpenFile(p, os.O_RDWR|os.O_TRUNC, 0)
	wantErrno(t, "open with O_TRUNC", err, syscall.EPERM)
	_, err = os.Create(filepath.Join(m.Dir(), "new.img"))
	if err == nil {
		t.Fatal("create a file in the mount: got success, want an error")
	}

	// Discard through fallocate zeroes, and frees whole blocks.
	if err := syscall.Fallocate(int(f.Fd()), fallocPunchHole|fallocKeepSize, 64<<10, 128<<10); err != nil {
		t.Fatalf("punch hole: %v", err)
	}
	clear(want[64<<10 : 192<<10])
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("after punching a hole: read differs")
	}
}

// TestDirectWritesInParallel writes through an O_DIRECT descriptor from
// several goroutines at once (the kernel's direct-I/O mode with parallel
// writes) and checks the head, a cached descriptor opened before, and a
// fresh open all read what was written.
func TestDirectWritesInParallel(t *testing.T) {
	vols, m := testMount(t)
	const size, chunk, writers = 4 << 20, 64 << 10, 8
	createDisk(t, vols, "d", size)
	p := filepath.Join(m.Dir(), "d.img")
	cached, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer cached.Close()
	got := make([]byte, size)
	if _, err := cached.ReadAt(got, 0); err != nil { // fill its page cache with zeros
		t.Fatal(err)
	}
	direct, err := os.OpenFile(p, os.O_RDWR|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()

	want := randBytes(rand.New(rand.NewPCG(3, 4)), size)
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			buf := alignedBuf(chunk)
			for off := w * chunk; off < size; off += writers * chunk {
				copy(buf, want[off:off+chunk])
				if _, err := direct.WriteAt(buf, int64(off)); err != nil {
					errs <- fmt.Errorf("direct write at %d: %w", off, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := direct.Sync(); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	h, err := vols.Head("d")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the head differs from the direct writes (err %v)", err)
	}
	if _, err := cached.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("a cached descriptor still reads the old pages (err %v)", err)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("a new open differs from the direct writes (err %v)", err)
	}
}

// alignedBuf returns n bytes at a page boundary, as O_DIRECT wants.
func alignedBuf(n int) []byte {
	const page = 4096
	b := make([]byte, n+page)
	skip := (page - int(uintptr(unsafe.Pointer(&b[0]))%page)) % page
	return b[skip : skip+n : skip+n]
}

func TestReplicaFilesReadOnly(t *testing.T) {
	vols, m := testMount(t)
	ctx := context.Background()
	const size = 256 << 10
	createDisk(t, vols, "a", size)
	p := filepath.Join(m.Dir(), "a.img")
	old := randBytes(rand.New(rand.NewPCG(3, 4)), size)
	writeFile(t, p, old)
	if _, err := vols.CreateReplica(ctx, "a", "r1"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p, make([]byte, size))
	if got, want := readDir(t, filepath.Join(m.Dir(), "replicas")), []string{"a"}; !slices.Equal(got, want) {
		t.Fatalf("replicas/ lists %q, want %q", got, want)
	}
	if got, want := readDir(t, filepath.Join(m.Dir(), "replicas", "a")), []string{"r1.img"}; !slices.Equal(got, want) {
		t.Fatalf("replicas/a/ lists %q, want %q", got, want)
	}
	// Replicas outlive their disk, in the tree too.
	if _, err := vols.CreateReplica(ctx, "a", "r2"); err != nil {
		t.Fatal(err)
	}
	if err := vols.RemoveDisk(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if got, want := readDir(t, filepath.Join(m.Dir(), "replicas")), []string{"a"}; !slices.Equal(got, want) {
		t.Fatalf("replicas/ after removing disk a lists %q, want %q", got, want)
	}
	if got, want := readDir(t, filepath.Join(m.Dir(), "replicas", "a")), []string{"r1.img", "r2.img"}; !slices.Equal(got, want) {
		t.Fatalf("replicas/a/ after removing disk a lists %q, want %q", got, want)
	}
	rp := filepath.Join(m.Dir(), "replicas", "a", "r1.img")
	got, err := os.ReadFile(rp)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, old) {
		t.Fatal("replica file does not hold the content at the replica")
	}
	_, err = os.OpenFile(rp, os.O_RDWR, 0)
	wantErrno(t, "open a replica for writing", err, syscall.EROFS)
	wantErrno(t, "truncate a replica", os.Truncate(rp, 0), syscall.EROFS)

	// A replica removed under an open file stays readable through it.
	f, err := os.Open(rp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := vols.RemoveReplica(ctx, "a", "r1"); err != nil {
		t.Fatal(err)
	}
	if _, err := vols.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, old) {
		t.Fatalf("read a removed replica through an open file: err %v, equal %v; want its old content", err, bytes.Equal(got, old))
	}
	_, err = os.Stat(rp)
	wantErrno(t, "stat a removed replica", err, syscall.ENOENT)
}

func TestSpacesuitFilesReadOnly(t *testing.T) {
	vols, m := testMount(t)
	ctx := context.Background()
	const size = 256 << 10
	createDisk(t, vols, "a", size)
	dir := filepath.Join(m.Dir(), "spacesuits")
	if got := readDir(t, dir); len(got) != 0 {
		t.Fatalf("spacesuits/ before publishing lists %q, want nothing", got)
	}
	p := filepath.Join(m.Dir(), "a.img")
	h, err := vols.Head("a")
	if err != nil {
		t.Fatal(err)
	}
	// publish makes the next version of spacesuit base from disk a and
	// returns what the disk held then.
	publish := func() []byte {
		t.Helper()
		src := make([]byte, size)
		if _, err := h.ReadAt(src, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := vols.PublishSpacesuit(ctx, "base", volume.Ref{Disk: "a"}, 0); err != nil {
			t.Fatal(err)
		}
		return src
	}
	writeFile(t, p, randBytes(rand.New(rand.NewPCG(5, 6)), size))
	v1 := publish()
	writeFile(t, p, bytes.Repeat([]byte("v2"), 4<<10))
	v2 := publish()
	writeFile(t, p, make([]byte, size)) // the versions must not follow the disk

	// Published while mounted: listed at once, one file per version.
	if got, want := readDir(t, dir), []string{"base@1.img", "base@2.img"}; !slices.Equal(got, want) {
		t.Fatalf("spacesuits/ lists %q, want %q", got, want)
	}
	p1, p2 := filepath.Join(dir, "base@1.img"), filepath.Join(dir, "base@2.img")
	st, err := os.Stat(p1)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != size || st.Mode() != 0o444 {
		t.Fatalf("base@1.img: size %d mode %v, want %d -r--r--r--", st.Size(), st.Mode(), size)
	}
	got, err := os.ReadFile(p1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, v1) {
		t.Fatal("base@1.img does not hold the disk's content when it was published")
	}
	if got, err = os.ReadFile(p2); err != nil || !bytes.Equal(got, v2) {
		t.Fatalf("read base@2.img: err %v, equal %v; want the disk's content when it was published", err, bytes.Equal(got, v2))
	}
	for _, bad := range []string{"base@01.img", "base@3.img", "base@0.img", "base.img", "base@1"} {
		_, err := os.Stat(filepath.Join(dir, bad))
		wantErrno(t, "stat spacesuits/"+bad, err, syscall.ENOENT)
	}

	_, err = os.OpenFile(p1, os.O_RDWR, 0)
	wantErrno(t, "open a spacesuit for writing", err, syscall.EROFS)
	_, err = os.OpenFile(p1, os.O_WRONLY, 0)
	wantErrno(t, "open a spacesuit write-only", err, syscall.EROFS)
	wantErrno(t, "truncate a spacesuit", os.Truncate(p1, 0), syscall.EROFS)
	_, err = os.Create(filepath.Join(dir, "base@3.img"))
	if err == nil {
		t.Fatal("create a file in spacesuits/: got success, want an error")
	}

	// A removed version vanishes at once; an open file keeps reading it.
	f, err := os.Open(p1)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := vols.RemoveSpacesuit(ctx, "base", 1); err != nil {
		t.Fatal(err)
	}
	if got, want := readDir(t, dir), []string{"base@2.img"}; !slices.Equal(got, want) {
		t.Fatalf("spacesuits/ after removing base@1 lists %q, want %q", got, want)
	}
	_, err = os.Stat(p1)
	wantErrno(t, "stat a removed spacesuit", err, syscall.ENOENT)
	_, err = os.Open(p1)
	wantErrno(t, "open a removed spacesuit", err, syscall.ENOENT)
	if _, err := vols.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, v1) {
		t.Fatalf("read a removed spacesuit through an open file: err %v, equal %v; want its old content", err, bytes.Equal(got, v1))
	}
}

func TestDisksAppearAndVanish(t *testing.T) {
	vols, m := testMount(t)
	ctx := context.Background()
	createDisk(t, vols, "a", 64<<10)
	pa := filepath.Join(m.Dir(), "a.img")
	data := bytes.Repeat([]byte("weft"), 16<<10/4)
	f, err := os.OpenFile(pa, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	st1, err := os.Stat(pa)
	if err != nil {
		t.Fatal(err)
	}

	// A clone made while mounted is there at once, with the content.
	if _, err := vols.Clone(ctx, volume.Ref{Disk: "a"}, "c", ""); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(m.Dir(), "c.img"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:len(data)], data) {
		t.Fatal("the clone's file does not hold the disk's content")
	}

	// Removed: gone from lookups and listings; the open file fails cleanly.
	if err := vols.RemoveDisk(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	_, err = os.Stat(pa)
	wantErrno(t, "stat a removed disk", err, syscall.ENOENT)
	if got, want := readDir(t, m.Dir()), []string{"c.img", "replicas", "spacesuits"}; !slices.Equal(got, want) {
		t.Fatalf("root lists %q, want %q", got, want)
	}
	// Pages this open file already cached may still read (see doc.go);
	// the rest fails.
	_, err = f.ReadAt(got[:4096], 48<<10)
	wantErrno(t, "read a removed disk through an open file", err, syscall.EIO)
	_, err = f.WriteAt(data, 0)
	wantErrno(t, "write a removed disk through an open file", err, syscall.EIO)

	// Created again under the same name: a new, empty file, and the old
	// open file does not reach it.
	createDisk(t, vols, "a", 64<<10)
	st2, err := os.Stat(pa)
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(st1, st2) {
		t.Fatal("a recreated disk has the removed disk's inode")
	}
	got, err = os.ReadFile(pa)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, make([]byte, 64<<10)) {
		t.Fatal("a recreated disk's file is not empty")
	}
	_, err = f.WriteAt(data, 0)
	wantErrno(t, "write the removed incarnation", err, syscall.EIO)
}

func TestUnmountBusyAndLazy(t *testing.T) {
	vols, m := testMount(t)
	createDisk(t, vols, "a", 64<<10)
	f, err := os.Open(filepath.Join(m.Dir(), "a.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Unmount(false); !errors.Is(err, ErrBusy) {
		f.Close()
		t.Fatalf("unmount with an open file: got %v, want ErrBusy", err)
	}
	if err := m.Unmount(true); err != nil {
		t.Fatalf("lazy unmount: %v", err)
	}
	if _, err := f.ReadAt(make([]byte, 10), 0); err != nil {
		t.Fatalf("read after lazy unmount: got %v, want success", err)
	}
	select {
	case <-m.Done():
		t.Fatal("mount done while a file is still open")
	default:
	}
	f.Close()
	select {
	case <-m.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("mount not done 10s after its last file was closed")
	}
}

func TestMountPointChecks(t *testing.T) {
	vols, m := testMount(t)
	cfg := DefaultConfig()
	cfg.Volumes = vols
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"relative", filepath.Join(t.TempDir(), "missing"), file, m.Dir(), "/"} {
		if m2, err := New(ctx, dir, cfg); !errors.Is(err, ErrMountPoint) {
			if err == nil {
				m2.Unmount(true)
			}
			t.Errorf("mount on %s: got %v, want ErrMountPoint", dir, err)
		}
	}
}
