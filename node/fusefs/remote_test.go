package fusefs

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/weft-mesh/weft/volume"
)

// fakeRemote shows one disk another node owns: the committed state of a
// local disk of the test's manager, published under another name.
type fakeRemote struct {
	vols *volume.Manager
	name string

	mu   sync.Mutex
	info volume.DiskInfo // as committed by its "owner"
}

func (r *fakeRemote) publish(info volume.DiskInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	info.Name = r.name
	r.info = info
}

func (r *fakeRemote) RemoteDisks(ctx context.Context) []volume.DiskInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return []volume.DiskInfo{r.info}
}

func (r *fakeRemote) RemoteDisk(ctx context.Context, name string) (volume.DiskInfo, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.info, name == r.name
}

func (r *fakeRemote) OpenRemoteDisk(ctx context.Context, name string) (*volume.View, error) {
	r.mu.Lock()
	info := r.info
	r.mu.Unlock()
	if name != r.name {
		return nil, volume.ErrNotFound
	}
	return r.vols.OpenRootView(name, info.Root, info.Size, info.BlockSize)
}

// TestRemoteDiskFile shows a disk another node owns as a read-only file at
// its committed state; after the owner commits again, a new open reads the
// new state while a handle opened before keeps reading the old one.
func TestRemoteDiskFile(t *testing.T) {
	var remote *fakeRemote
	vols, m := testMountWith(t, func(cfg *Config, vols *volume.Manager) {
		remote = &fakeRemote{vols: vols, name: "far"}
		cfg.Remote = remote
	})
	ctx := context.Background()
	const size = 256 << 10
	createDisk(t, vols, "src", size)
	h, err := vols.Head("src")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	v1 := randBytes(rng, size)
	if _, err := h.WriteAt(v1, 0); err != nil {
		t.Fatal(err)
	}
	info, err := vols.Commit(ctx, "src")
	if err != nil {
		t.Fatal(err)
	}
	remote.publish(info)

	if got, want := readDir(t, m.Dir()), []string{"far.img", "replicas", "spacesuits", "src.img"}; !slices.Equal(got, want) {
		t.Fatalf("root lists %q, want %q", got, want)
	}
	p := filepath.Join(m.Dir(), "far.img")
	st, err := os.Stat(p)
	if err != nil || st.Size() != size || st.Mode().Perm() != 0o444 {
		t.Fatalf("stat far.img: %v, %v; want %d bytes, mode 0444", st, err, size)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, v1) {
		t.Fatalf("far.img differs from the owner's commit (err %v)", err)
	}
	_, err = os.OpenFile(p, os.O_RDWR, 0)
	wantErrno(t, "open for writing", err, syscall.EROFS)

	old, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	v2 := randBytes(rng, size)
	if _, err := h.WriteAt(v2, 0); err != nil {
		t.Fatal(err)
	}
	if info, err = vols.Commit(ctx, "src"); err != nil {
		t.Fatal(err)
	}
	remote.publish(info)
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, v2) {
		t.Fatalf("after the owner's next commit, a new open differs from it (err %v)", err)
	}
	got := make([]byte, size)
	if _, err := old.ReadAt(got, 0); err != nil || !bytes.Equal(got, v1) {
		t.Fatalf("a handle opened before the commit no longer reads the old state (err %v)", err)
	}
}
