package dockervol

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/weft-mesh/weft/api"
	"github.com/weft-mesh/weft/node/blockfs"
)

// fakeDisks is a daemon with disks in a map.
type fakeDisks struct {
	mu      sync.Mutex
	disks   map[string]api.DiskInfo
	clones  map[string]api.Ref // new disk -> source
	fuse    []string           // FUSE mounts asked for
	removed []string
}

func newFakeDisks() *fakeDisks {
	return &fakeDisks{disks: map[string]api.DiskInfo{}, clones: map[string]api.Ref{}}
}

func (f *fakeDisks) CreateDisk(ctx context.Context, s api.DiskSpec) (api.DiskInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.disks[s.Name]; ok {
		return api.DiskInfo{}, fmt.Errorf("disk %s: %w", s.Name, api.ErrExists)
	}
	info := api.DiskInfo{Name: s.Name, Size: s.Size, BlockSize: s.BlockSize, Replicas: s.Replicas, Sync: s.Sync}
	f.disks[s.Name] = info
	return info, nil
}

func (f *fakeDisks) Clone(ctx context.Context, src api.Ref, name, _ string) (api.DiskInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if src.Disk == "missing" {
		return api.DiskInfo{}, fmt.Errorf("%s: %w", src, api.ErrNotFound)
	}
	info := api.DiskInfo{Name: name, Size: 1 << 30, Replicas: 2}
	f.disks[name], f.clones[name] = info, src
	return info, nil
}

func (f *fakeDisks) RemoveDisk(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.disks[name]; !ok {
		return fmt.Errorf("disk %s: %w", name, api.ErrNotFound)
	}
	delete(f.disks, name)
	f.removed = append(f.removed, name)
	return nil
}

func (f *fakeDisks) DiskInfo(ctx context.Context, name string) (api.DiskInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	info, ok := f.disks[name]
	if !ok {
		return api.DiskInfo{}, &api.APIError{Status: 404, Code: api.CodeNotFound, Message: "disk " + name + " not found"}
	}
	return info, nil
}

func (f *fakeDisks) ListDisks(ctx context.Context) ([]api.DiskInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.DiskInfo
	for _, d := range f.disks {
		out = append(out, d)
	}
	return out, nil
}

func (f *fakeDisks) Mount(ctx context.Context, dir string) (api.MountInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.fuse {
		if d == dir {
			return api.MountInfo{}, &api.APIError{Status: 409, Code: api.CodeExists, Message: "mounted there already"}
		}
	}
	f.fuse = append(f.fuse, dir)
	return api.MountInfo{Dir: dir}, nil
}

// fakeMounter records what is mounted where.
type fakeMounter struct {
	mu       sync.Mutex
	mounted  map[string]string // dir -> file
	mounts   int               // Mount calls
	unmounts int               // Unmount calls
	fail     error             // the next Mount fails with it
	ctxErr   error             // the context's error when Mount was called
	deadline bool              // the context had a deadline
}

func (m *fakeMounter) Mount(ctx context.Context, file, dir string, flags uintptr) (blockfs.Attachment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mounts++
	m.ctxErr = ctx.Err()
	_, m.deadline = ctx.Deadline()
	if err := m.fail; err != nil {
		m.fail = nil
		return blockfs.Attachment{}, err
	}
	m.mounted[dir] = file
	return blockfs.Attachment{Device: "/dev/loop9", FSType: "ext4"}, nil
}

func (m *fakeMounter) Unmount(ctx context.Context, file, dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.unmounts++
	delete(m.mounted, dir)
	return nil
}

func (m *fakeMounter) Mounted(dir string) (bool, error) { return m.isMounted(dir), nil }

func (m *fakeMounter) isMounted(dir string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.mounted[dir]
	return ok
}

// pluginServer serves a Plugin over HTTP as dockerd would reach it.
type pluginServer struct {
	t     *testing.T
	url   string
	dir   string
	disks *fakeDisks
	mnt   *fakeMounter
}

func newPluginServer(t *testing.T, dir string, disks *fakeDisks, mnt *fakeMounter) *pluginServer {
	t.Helper()
	s := newPluginServerWith(t, dir, disks, mnt)
	s.mnt = mnt
	return s
}

// newPluginServerWith serves a plugin that mounts with mnt (the returned
// server's mnt is not set).
func newPluginServerWith(t *testing.T, dir string, disks *fakeDisks, mnt Mounter) *pluginServer {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Dir, cfg.DefaultSize = dir, 32<<20
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := New(cfg, disks, mnt)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewHandler(p, cfg.Logger))
	t.Cleanup(srv.Close)
	return &pluginServer{t: t, url: srv.URL, dir: dir, disks: disks}
}

// call posts body to /call and decodes the answer.
func (s *pluginServer) call(call string, body any) response {
	s.t.Helper()
	var b []byte
	switch v := body.(type) {
	case nil:
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			s.t.Fatal(err)
		}
	}
	resp, err := http.Post(s.url+"/"+call, contentType, bytes.NewReader(b))
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("%s: HTTP %s, want 200 (errors go in Err)", call, resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != contentType {
		s.t.Fatalf("%s: Content-Type %q, want %q", call, ct, contentType)
	}
	var out response
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		s.t.Fatalf("%s: decode answer: %v", call, err)
	}
	return out
}

// ok calls and fails the test on an Err.
func (s *pluginServer) ok(call string, body any) response {
	s.t.Helper()
	r := s.call(call, body)
	if r.Err != "" {
		s.t.Fatalf("%s %v: Err %q, want none", call, body, r.Err)
	}
	return r
}

// refused calls and wants an Err containing want.
func (s *pluginServer) refused(want, call string, body any) {
	s.t.Helper()
	r := s.call(call, body)
	if !strings.Contains(r.Err, want) {
		s.t.Fatalf("%s %v: Err %q, want one containing %q", call, body, r.Err, want)
	}
}

func newTestPlugin(t *testing.T) *pluginServer {
	return newPluginServer(t, t.TempDir(), newFakeDisks(), &fakeMounter{mounted: map[string]string{}})
}

func TestActivateAndCapabilities(t *testing.T) {
	s := newTestPlugin(t)
	if r := s.ok("Plugin.Activate", nil); len(r.Implements) != 1 || r.Implements[0] != "VolumeDriver" {
		t.Fatalf("Activate: Implements %q, want [VolumeDriver]", r.Implements)
	}
	if r := s.ok("VolumeDriver.Capabilities", nil); r.Caps == nil || r.Caps.Scope != "local" {
		t.Fatalf("Capabilities: got %+v, want Scope local", r.Caps)
	}
}

func TestCreate(t *testing.T) {
	s := newTestPlugin(t)
	s.ok("VolumeDriver.Create", request{Name: "a", Opts: map[string]string{"size": "10G", "replicas": "2", "sync": "true", "block-size": "4K"}})
	want := api.DiskInfo{Name: "a", Size: 10 << 30, BlockSize: 4 << 10, Replicas: 2, Sync: true}
	if got := s.disks.disks["a"]; !reflect.DeepEqual(got, want) {
		t.Fatalf("disk a: got %+v, want %+v", got, want)
	}
	s.ok("VolumeDriver.Create", request{Name: "b"})
	if got := s.disks.disks["b"].Size; got != 32<<20 {
		t.Fatalf("disk b without size: got %d bytes, want the default %d", got, 32<<20)
	}
	s.ok("VolumeDriver.Create", request{Name: "c", Opts: map[string]string{"from": "ubuntu@3"}})
	if got := s.disks.clones["c"]; got != (api.Ref{Disk: "ubuntu", Replica: "3"}) {
		t.Fatalf("clone c: source %+v, want ubuntu@3", got)
	}
	// An existing disk is adopted as it is, never changed.
	s.ok("VolumeDriver.Create", request{Name: "a"})
	s.refused("exists already", "VolumeDriver.Create", request{Name: "a", Opts: map[string]string{"size": "1G"}})
	if got := s.disks.disks["a"].Size; got != 10<<30 {
		t.Fatalf("disk a after a refused create: size %d, want %d", got, 10<<30)
	}
	for _, tc := range []struct {
		opts map[string]string
		want string
	}{
		{map[string]string{"size": "lots"}, "option size"},
		{map[string]string{"replicas": "0"}, "option replicas"},
		{map[string]string{"replicas": "x"}, "option replicas"},
		{map[string]string{"sync": "maybe"}, "option sync"},
		{map[string]string{"colour": "blue"}, `unknown option "colour"`},
		{map[string]string{"from": "a@"}, "option from"},
		{map[string]string{"from": "a@r1", "size": "1G"}, "takes its size"},
		{map[string]string{"from": "missing@1"}, "not found"},
	} {
		s.refused(tc.want, "VolumeDriver.Create", request{Name: "bad", Opts: tc.opts})
	}
	if _, ok := s.disks.disks["bad"]; ok {
		t.Fatal("a refused create made the disk")
	}
	s.refused("names no volume", "VolumeDriver.Create", request{})
	s.refused("decode request", "VolumeDriver.Create", "{not json")
}

// TestMountCountsUsers mounts once for two users, unmounts with the last,
// and refuses to remove a mounted volume.
func TestMountCountsUsers(t *testing.T) {
	s := newTestPlugin(t)
	s.ok("VolumeDriver.Create", request{Name: "v"})
	dir := filepath.Join(s.dir, "volumes", "v")
	if r := s.ok("VolumeDriver.Path", request{Name: "v"}); r.Mountpoint != "" {
		t.Fatalf("Path before a mount: %q, want none", r.Mountpoint)
	}
	if r := s.ok("VolumeDriver.Mount", request{Name: "v", ID: "c1"}); r.Mountpoint != dir {
		t.Fatalf("Mount: Mountpoint %q, want %s", r.Mountpoint, dir)
	}
	if got, want := s.mnt.mounted[dir], filepath.Join(s.dir, "fuse", "v.img"); got != want {
		t.Fatalf("mounted file: got %q, want %q", got, want)
	}
	if len(s.disks.fuse) != 1 || s.disks.fuse[0] != filepath.Join(s.dir, "fuse") {
		t.Fatalf("FUSE mounts asked for: %q, want [%s/fuse]", s.disks.fuse, s.dir)
	}
	s.ok("VolumeDriver.Mount", request{Name: "v", ID: "c2"})
	s.ok("VolumeDriver.Mount", request{Name: "v", ID: "c2"}) // a retry counts once
	s.refused("in use", "VolumeDriver.Remove", request{Name: "v"})
	if len(s.disks.removed) != 0 {
		t.Fatalf("a mounted volume's disk was removed")
	}
	if r := s.ok("VolumeDriver.Get", request{Name: "v"}); r.Volume == nil || r.Volume.Mountpoint != dir || r.Volume.Status["mounts"] != float64(2) {
		t.Fatalf("Get: %+v, want Mountpoint %s and 2 mounts", r.Volume, dir)
	}
	s.ok("VolumeDriver.Unmount", request{Name: "v", ID: "c1"})
	s.ok("VolumeDriver.Unmount", request{Name: "v", ID: "c1"})       // a retry
	s.ok("VolumeDriver.Unmount", request{Name: "v", ID: "stranger"}) // never mounted
	if !s.mnt.isMounted(dir) || s.mnt.unmounts != 0 {
		t.Fatal("unmounted while c2 still uses it")
	}
	if r := s.ok("VolumeDriver.Path", request{Name: "v"}); r.Mountpoint != dir {
		t.Fatalf("Path with one user: %q, want %s", r.Mountpoint, dir)
	}
	s.ok("VolumeDriver.Unmount", request{Name: "v", ID: "c2"})
	if s.mnt.isMounted(dir) || s.mnt.unmounts != 1 {
		t.Fatalf("after the last unmount: mounted %v, %d unmounts; want unmounted once", s.mnt.isMounted(dir), s.mnt.unmounts)
	}
	// A retry of the last unmount tries again: after a failed unmount,
	// that is what takes the volume down.
	s.ok("VolumeDriver.Unmount", request{Name: "v", ID: "c2"})
	if s.mnt.isMounted(dir) {
		t.Fatal("mounted after a repeated unmount")
	}
	s.ok("VolumeDriver.Remove", request{Name: "v"})
	if len(s.disks.removed) != 1 || s.disks.removed[0] != "v" {
		t.Fatalf("removed disks: %q, want [v]", s.disks.removed)
	}
	s.refused("not found", "VolumeDriver.Get", request{Name: "v"})
	s.refused("has no ID", "VolumeDriver.Mount", request{Name: "v"})
}

// TestRestartKeepsReferences: a new plugin on the same directory knows who
// uses a volume, so the first user's unmount keeps it mounted and the
// last's takes it down.
func TestRestartKeepsReferences(t *testing.T) {
	dir := t.TempDir()
	disks, mnt := newFakeDisks(), &fakeMounter{mounted: map[string]string{}}
	s := newPluginServer(t, dir, disks, mnt)
	s.ok("VolumeDriver.Create", request{Name: "v"})
	s.ok("VolumeDriver.Mount", request{Name: "v", ID: "c1"})
	s.ok("VolumeDriver.Mount", request{Name: "v", ID: "c2"})

	s2 := newPluginServer(t, dir, disks, mnt)
	vdir := filepath.Join(dir, "volumes", "v")
	if r := s2.ok("VolumeDriver.List", nil); len(r.Volumes) != 1 || r.Volumes[0].Mountpoint != vdir {
		t.Fatalf("List after a restart: %+v, want v mounted at %s", r.Volumes, vdir)
	}
	s2.refused("in use", "VolumeDriver.Remove", request{Name: "v"})
	s2.ok("VolumeDriver.Unmount", request{Name: "v", ID: "c1"})
	if !mnt.isMounted(vdir) {
		t.Fatal("the restarted plugin unmounted a volume c2 still uses")
	}
	s2.ok("VolumeDriver.Unmount", request{Name: "v", ID: "c2"})
	if mnt.isMounted(vdir) {
		t.Fatal("the restarted plugin left v mounted after its last user")
	}
}

// TestMountFailureForgetsTheUser: a failed mount leaves no reference
// behind, so it does not keep the volume from being removed.
func TestMountFailureForgetsTheUser(t *testing.T) {
	s := newTestPlugin(t)
	s.ok("VolumeDriver.Create", request{Name: "v"})
	s.mnt.fail = blockfs.ErrUnknownData
	s.refused("no known type", "VolumeDriver.Mount", request{Name: "v", ID: "c1"})
	if r := s.ok("VolumeDriver.Path", request{Name: "v"}); r.Mountpoint != "" {
		t.Fatalf("Path after a failed mount: %q, want none", r.Mountpoint)
	}
	s.refused("not found", "VolumeDriver.Mount", request{Name: "nope", ID: "c1"})
	s.ok("VolumeDriver.Remove", request{Name: "v"})
}

func TestListDescribesDisks(t *testing.T) {
	s := newTestPlugin(t)
	s.ok("VolumeDriver.Create", request{Name: "b", Opts: map[string]string{"size": "1G", "replicas": "3"}})
	s.ok("VolumeDriver.Create", request{Name: "a"})
	r := s.ok("VolumeDriver.List", nil)
	if len(r.Volumes) != 2 || r.Volumes[0].Name != "a" || r.Volumes[1].Name != "b" {
		t.Fatalf("List: %+v, want a and b", r.Volumes)
	}
	if st := r.Volumes[1].Status; st["size"] != "1 GiB" || st["replicas"] != float64(3) || r.Volumes[1].Mountpoint != "" {
		t.Fatalf("List: b is %+v, want size 1 GiB, 3 replicas, not mounted", r.Volumes[1])
	}
}

func TestDecodeRequestBounds(t *testing.T) {
	big := `{"Name":"` + strings.Repeat("x", maxRequestLen) + `"}`
	if _, err := decodeRequest(strings.NewReader(big), true); err == nil {
		t.Fatal("an oversized request: got nil error")
	}
	if _, err := decodeRequest(strings.NewReader(""), false); err != nil {
		t.Fatalf("an empty body where no name is needed: %v", err)
	}
	if _, err := decodeRequest(strings.NewReader(`{"Name":"v","ID":"x","Opts":{"size":"1G"}}`), true); err != nil {
		t.Fatal(err)
	}
	if _, err := decodeRequest(strings.NewReader(`{"Name":3}`), true); err == nil {
		t.Fatal("a number for a name: got nil error")
	}
}

// TestRecoverAfterReboot: references to a volume that is not mounted
// (the machine rebooted) are dropped, and a volume mounted with no
// reference is unmounted, when the plugin starts.
func TestRecoverAfterReboot(t *testing.T) {
	dir := t.TempDir()
	disks, mnt := newFakeDisks(), &fakeMounter{mounted: map[string]string{}}
	s := newPluginServer(t, dir, disks, mnt)
	s.ok("VolumeDriver.Create", request{Name: "a"})
	s.ok("VolumeDriver.Create", request{Name: "b"})
	s.ok("VolumeDriver.Mount", request{Name: "a", ID: "c1"})
	s.ok("VolumeDriver.Mount", request{Name: "b", ID: "c2"})
	adir, bdir := filepath.Join(dir, "volumes", "a"), filepath.Join(dir, "volumes", "b")
	if err := os.MkdirAll(bdir, 0o700); err != nil {
		t.Fatal(err)
	}
	delete(mnt.mounted, adir) // a reboot took a's mount away
	// b's user is forgotten without an unmount: a plugin that died
	// between the two.
	r, err := loadRefs(filepath.Join(dir, "mounts.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.drop("b", "c2"); err != nil {
		t.Fatal(err)
	}

	s2 := newPluginServer(t, dir, disks, mnt)
	if got := s2.ok("VolumeDriver.Path", request{Name: "a"}); got.Mountpoint != "" {
		t.Fatalf("a after a reboot: Path %q, want none", got.Mountpoint)
	}
	s2.ok("VolumeDriver.Remove", request{Name: "a"})
	if mnt.isMounted(bdir) {
		t.Fatal("b, mounted with no user, is still mounted after the restart")
	}
}

// TestForeignDiskIsNeverUsed: a weft disk the plugin did not make is not
// adopted, listed, described, mounted or removed (its other users would
// race the container's file system).
func TestForeignDiskIsNeverUsed(t *testing.T) {
	s := newTestPlugin(t)
	s.disks.disks["theirs"] = api.DiskInfo{Name: "theirs", Size: 1 << 30}
	s.ok("VolumeDriver.Create", request{Name: "mine"})
	s.refused("not made by the Docker plugin", "VolumeDriver.Create", request{Name: "theirs"})
	if r := s.ok("VolumeDriver.List", nil); len(r.Volumes) != 1 || r.Volumes[0].Name != "mine" {
		t.Fatalf("List: %+v, want only mine", r.Volumes)
	}
	s.refused("not found", "VolumeDriver.Get", request{Name: "theirs"})
	s.refused("not found", "VolumeDriver.Mount", request{Name: "theirs", ID: "c1"})
	if s.mnt.mounts != 0 {
		t.Fatal("a foreign disk was mounted")
	}
	s.refused("not made by the Docker plugin", "VolumeDriver.Remove", request{Name: "theirs"})
	if _, ok := s.disks.disks["theirs"]; !ok {
		t.Fatal("a foreign disk was removed")
	}
	// The record survives a restart.
	s2 := newPluginServer(t, s.dir, s.disks, s.mnt)
	s2.ok("VolumeDriver.Mount", request{Name: "mine", ID: "c1"})
	s2.refused("not made by the Docker plugin", "VolumeDriver.Create", request{Name: "theirs"})
}

// TestRemoveOfGoneDisk: a volume whose disk was removed behind Docker's
// back (weft disk rm) is removed without an error, once.
func TestRemoveOfGoneDisk(t *testing.T) {
	s := newTestPlugin(t)
	s.ok("VolumeDriver.Create", request{Name: "v"})
	delete(s.disks.disks, "v")
	s.ok("VolumeDriver.Remove", request{Name: "v"})
	s.ok("VolumeDriver.Remove", request{Name: "v"}) // Docker's retry
	// The name is free again, and a disk made later by someone else under
	// it is not taken for the plugin's.
	s.disks.disks["v"] = api.DiskInfo{Name: "v"}
	s.refused("not made by the Docker plugin", "VolumeDriver.Create", request{Name: "v"})
}

// busyMounter refuses to unmount some directories, as blockfs does while
// a process works in one (ErrBusy) or its disk refused writes
// (ErrNotWritten).
type busyMounter struct {
	*fakeMounter
	refuse map[string]error
}

func (m *busyMounter) Unmount(ctx context.Context, file, dir string) error {
	if err := m.refuse[dir]; err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return m.fakeMounter.Unmount(ctx, file, dir)
}

// TestRecoverContinuesPastBusy: at start, a volume mounted with no user
// that is busy stays mounted and the others are still recovered; the
// plugin starts.
func TestRecoverContinuesPastBusy(t *testing.T) {
	dir := t.TempDir()
	fm := &fakeMounter{mounted: map[string]string{}}
	adir, bdir, cdir := filepath.Join(dir, "volumes", "a"), filepath.Join(dir, "volumes", "b"), filepath.Join(dir, "volumes", "c")
	for _, d := range []string{adir, bdir, cdir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		fm.mounted[d] = "file"
	}
	cfg := DefaultConfig()
	cfg.Dir = dir
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := New(cfg, newFakeDisks(), &busyMounter{fakeMounter: fm, refuse: map[string]error{adir: blockfs.ErrBusy, cdir: blockfs.ErrNotWritten}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Recover(context.Background()); err != nil {
		t.Fatalf("Recover with a busy volume: %v, want it logged and passed", err)
	}
	if !fm.isMounted(adir) || fm.isMounted(bdir) || !fm.isMounted(cdir) {
		t.Fatalf("after Recover: a mounted %v (busy: want true), b %v (want false), c %v (writes refused: want true)", fm.isMounted(adir), fm.isMounted(bdir), fm.isMounted(cdir))
	}
}

// TestDecodeRequestNames: a name must be a weft disk name, so none
// reaches a path join with a "/" or a "..".
func TestDecodeRequestNames(t *testing.T) {
	for _, name := range []string{"../etc", "a/b", "..", ".hidden", "-x", "a b", strings.Repeat("n", 129)} {
		body := `{"Name":` + strconvQuote(name) + `}`
		if _, err := decodeRequest(strings.NewReader(body), true); err == nil {
			t.Errorf("name %q: accepted, want refused", name)
		}
	}
	if _, err := decodeRequest(strings.NewReader(`{"Name":"my-vol_1.0"}`), true); err != nil {
		t.Fatal(err)
	}
	s := newTestPlugin(t)
	s.refused("must not start with", "VolumeDriver.Create", request{Name: "../../escape"})
	s.refused("not allowed", "VolumeDriver.Mount", request{Name: "x/../../escape", ID: "c1"})
	if len(s.disks.disks) != 0 {
		t.Fatal("a create with a bad name made a disk")
	}
}

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

// TestMountOutlivesTheRequest: the mount (mkfs included) does not run
// under the HTTP request's context, which dockerd cancels when it gives
// up; it has a bound of its own.
func TestMountOutlivesTheRequest(t *testing.T) {
	fm := &fakeMounter{mounted: map[string]string{}}
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := New(cfg, newFakeDisks(), fm)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Create(context.Background(), "v", nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // dockerd hung up
	if _, err := p.Mount(ctx, "v", "c1"); err != nil {
		t.Fatal(err)
	}
	if fm.ctxErr != nil || !fm.deadline {
		t.Fatalf("the mount ran with context error %v, deadline %v; want a live context with a deadline of its own", fm.ctxErr, fm.deadline)
	}
}

// TestUnmountFailureKeepsTheUser: the last user's unmount that fails
// (the file system is busy, or its writes did not reach the disk) keeps
// the mount ID's reference and reports the error to Docker, so Path
// still answers, Remove is still refused, a restarted plugin still knows
// the volume is in use, and a retry takes it down.
func TestUnmountFailureKeepsTheUser(t *testing.T) {
	dir := t.TempDir()
	disks, fm := newFakeDisks(), &fakeMounter{mounted: map[string]string{}}
	vdir := filepath.Join(dir, "volumes", "v")
	bm := &busyMounter{fakeMounter: fm, refuse: map[string]error{}}
	s := newPluginServerWith(t, dir, disks, bm)
	s.ok("VolumeDriver.Create", request{Name: "v"})
	s.ok("VolumeDriver.Mount", request{Name: "v", ID: "c1"})

	bm.refuse[vdir] = blockfs.ErrNotWritten
	s.refused("writes did not reach the disk", "VolumeDriver.Unmount", request{Name: "v", ID: "c1"})
	if !fm.isMounted(vdir) {
		t.Fatal("v unmounted though its unmount failed")
	}
	if r := s.ok("VolumeDriver.Path", request{Name: "v"}); r.Mountpoint != vdir {
		t.Fatalf("Path after a failed unmount: %q, want %s", r.Mountpoint, vdir)
	}
	s.refused("in use", "VolumeDriver.Remove", request{Name: "v"})

	// A restarted plugin still counts c1 and does not take v down at
	// start (Recover unmounts only volumes with no user).
	s2 := newPluginServerWith(t, dir, disks, bm)
	if !fm.isMounted(vdir) {
		t.Fatal("the restarted plugin unmounted v, which c1 still uses")
	}
	s2.refused("in use", "VolumeDriver.Remove", request{Name: "v"})

	delete(bm.refuse, vdir)
	s2.ok("VolumeDriver.Unmount", request{Name: "v", ID: "c1"})
	if fm.isMounted(vdir) {
		t.Fatal("v still mounted after the retried unmount succeeded")
	}
	if r := s2.ok("VolumeDriver.Path", request{Name: "v"}); r.Mountpoint != "" {
		t.Fatalf("Path after the unmount: %q, want none", r.Mountpoint)
	}
	s2.ok("VolumeDriver.Remove", request{Name: "v"})

	// An unmount that fails yet takes the mount down (its disk file was
	// dead) forgets the user: nothing is mounted for it to use.
	s2.ok("VolumeDriver.Create", request{Name: "w"})
	s2.ok("VolumeDriver.Mount", request{Name: "w", ID: "c2"})
	gone := &goneMounter{busyMounter: bm}
	s3 := newPluginServerWith(t, dir, disks, gone)
	s3.refused("the file behind /dev/loop9 is gone", "VolumeDriver.Unmount", request{Name: "w", ID: "c2"})
	if r := s3.ok("VolumeDriver.Path", request{Name: "w"}); r.Mountpoint != "" {
		t.Fatalf("Path after an unmount that took the mount down: %q, want none", r.Mountpoint)
	}
	s3.ok("VolumeDriver.Remove", request{Name: "w"})
}

// goneMounter's Unmount takes the mount down and fails, as blockfs does
// when the file under the loop device is dead.
type goneMounter struct{ *busyMounter }

func (m *goneMounter) Unmount(ctx context.Context, file, dir string) error {
	if err := m.busyMounter.Unmount(ctx, file, dir); err != nil {
		return err
	}
	return fmt.Errorf("unmount %s: %w: the file behind /dev/loop9 is gone, unsynced writes are lost; detached it", dir, blockfs.ErrNotWritten)
}
