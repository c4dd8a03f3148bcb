package csi

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/weft-mesh/weft/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// fakeVolumes is a daemon in memory: disks and replicas by name, clones
// sharing nothing (the plugin never looks at data).
type fakeVolumes struct {
	mu    sync.Mutex
	disks map[string]api.DiskInfo
	reps  map[string][]api.ReplicaInfo
	busy  map[string]bool
}

func newFakeVolumes() *fakeVolumes {
	return &fakeVolumes{disks: map[string]api.DiskInfo{}, reps: map[string][]api.ReplicaInfo{}, busy: map[string]bool{}}
}

func notFound(what string) error {
	return &api.APIError{Status: http.StatusNotFound, Code: api.CodeNotFound, Message: what + ": not found"}
}

func (f *fakeVolumes) Status(context.Context) (api.Status, error) {
	return api.Status{ID: "node-1", PeerID: "peer-1", Space: api.SpaceStatus{FreeBytes: 10 << 30, ReserveBytes: 1 << 30}}, nil
}

func (f *fakeVolumes) ListDisks(context.Context) ([]api.DiskInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Collect(maps.Values(f.disks)), nil
}

func (f *fakeVolumes) CreateDisk(_ context.Context, s api.DiskSpec) (api.DiskInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s.Size%s.BlockSize != 0 {
		return api.DiskInfo{}, &api.APIError{Status: http.StatusBadRequest, Code: api.CodeInvalid, Message: "size not whole blocks"}
	}
	if s.Replicas == 0 {
		s.Replicas = api.DefaultReplicas
	}
	d := api.DiskInfo{Name: s.Name, Size: s.Size, BlockSize: s.BlockSize, Replicas: s.Replicas, Sync: s.Sync, Creator: s.Creator}
	f.disks[s.Name] = d
	return d, nil
}

func (f *fakeVolumes) DiskInfo(_ context.Context, name string) (api.DiskInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.disks[name]
	if !ok {
		return d, notFound(name)
	}
	return d, nil
}

func (f *fakeVolumes) RemoveDisk(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.disks[name]; !ok {
		return notFound(name)
	}
	if f.busy[name] {
		return &api.APIError{Status: http.StatusConflict, Code: api.CodeBusy, Message: name + " is in use"}
	}
	delete(f.disks, name)
	return nil
}

func (f *fakeVolumes) Clone(_ context.Context, src api.Ref, name, creator string) (api.DiskInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.disks[src.Disk]
	if !ok {
		return d, notFound(src.String())
	}
	d.Name, d.Sync, d.Origin, d.Creator = name, false, src.String(), creator
	f.disks[name] = d
	return d, nil
}

func (f *fakeVolumes) ListReplicas(_ context.Context, disk string) ([]api.ReplicaInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.disks[disk]; !ok && len(f.reps[disk]) == 0 {
		return nil, notFound(disk)
	}
	return f.reps[disk], nil
}

func (f *fakeVolumes) ReplicaDisks(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for d, reps := range f.reps {
		if len(reps) > 0 {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (f *fakeVolumes) CreateReplica(_ context.Context, disk, name string) (api.ReplicaInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.disks[disk]
	if !ok {
		return api.ReplicaInfo{}, notFound(disk)
	}
	r := api.ReplicaInfo{Disk: disk, Name: name, Size: d.Size, BlockSize: d.BlockSize, Created: time.Unix(1, 0)}
	f.reps[disk] = append(f.reps[disk], r)
	return r, nil
}

func (f *fakeVolumes) RemoveReplica(_ context.Context, disk, name string) error {
	return fmt.Errorf("not used")
}

func (f *fakeVolumes) Mount(context.Context, string) (api.MountInfo, error) {
	return api.MountInfo{}, fmt.Errorf("cannot mount in a unit test")
}

func newTestPlugin(t *testing.T) (*Plugin, *fakeVolumes) {
	t.Helper()
	f := newFakeVolumes()
	p, err := New(Config{Volumes: f, DisksDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return p, f
}

// newTestPluginWithVolumes is a plugin on a fake daemon holding an empty
// volume of each name, made by CreateVolume.
func newTestPluginWithVolumes(t *testing.T, names ...string) *Plugin {
	t.Helper()
	p, _ := newTestPlugin(t)
	for _, v := range names {
		if _, err := p.CreateVolume(context.Background(), createReq(v, 0, nil)); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("%s: %v (code %v), want code %v", what, err, got, want)
	}
}

func createReq(name string, required int64, params map[string]string) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{
		Name: name, Parameters: params,
		CapacityRange:      &csi.CapacityRange{RequiredBytes: required},
		VolumeCapabilities: []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}, AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}},
	}
}

func TestCreateVolumeParametersAndIdempotency(t *testing.T) {
	p, f := newTestPlugin(t)
	ctx := context.Background()
	resp, err := p.CreateVolume(ctx, createReq("pvc-1", 100<<20+1, map[string]string{"replicas": "3", "sync": "true"}))
	if err != nil {
		t.Fatal(err)
	}
	d := f.disks["pvc-1"]
	if want := int64(100<<20 + 64<<10); resp.GetVolume().GetCapacityBytes() != want || d.Size != want || d.Replicas != 3 || !d.Sync {
		t.Fatalf("created %+v (answered %d bytes), want %d bytes, 3 replicas, sync", d, resp.GetVolume().GetCapacityBytes(), want)
	}
	if _, err := p.CreateVolume(ctx, createReq("pvc-1", 100<<20, map[string]string{"replicas": "3"})); err != nil {
		t.Fatalf("CreateVolume again, fitting: %v", err)
	}
	_, err = p.CreateVolume(ctx, createReq("pvc-1", 100<<20, map[string]string{"replicas": "2"}))
	wantCode(t, "CreateVolume again with other replicas", err, codes.AlreadyExists)
	_, err = p.CreateVolume(ctx, createReq("pvc-2", 0, map[string]string{"colour": "blue"}))
	wantCode(t, "CreateVolume with an unknown parameter", err, codes.InvalidArgument)

	// A clone keeps its source's replicas and async mode.
	src := &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: "pvc-1"}}}
	req := createReq("pvc-3", 0, map[string]string{"replicas": "2"})
	req.VolumeContentSource = src
	_, err = p.CreateVolume(ctx, req)
	wantCode(t, "clone asking for other replicas", err, codes.InvalidArgument)
	req = createReq("pvc-3", 1<<30, nil)
	req.VolumeContentSource = src
	_, err = p.CreateVolume(ctx, req)
	wantCode(t, "clone larger than its source", err, codes.OutOfRange)
	if _, ok := f.disks["pvc-3"]; ok {
		t.Fatal("a refused clone made a disk")
	}
	req.CapacityRange = nil
	if _, err := p.CreateVolume(ctx, req); err != nil || f.disks["pvc-3"].Size != d.Size {
		t.Fatalf("clone: %v, %+v; want a disk of %d bytes", err, f.disks["pvc-3"], d.Size)
	}

	// A name weft does not accept maps to the same hashed disk each time.
	if _, err := p.CreateVolume(ctx, createReq("not a/valid name", 0, nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateVolume(ctx, createReq("not a/valid name", 0, nil)); err != nil || len(f.disks) != 3 {
		t.Fatalf("CreateVolume twice with an unusual name: %v, %d disks; want 3", err, len(f.disks))
	}
}

func snapshotSource(id string) *csi.VolumeContentSource {
	return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: id}}}
}

func volumeSource(id string) *csi.VolumeContentSource {
	return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: id}}}
}

func TestCreateVolumeIdempotencyKnowsTheContentSource(t *testing.T) {
	p := newTestPluginWithVolumes(t, "a", "b")
	ctx := context.Background()
	for _, v := range []string{"a", "b"} {
		if _, err := p.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-" + v, SourceVolumeId: v}); err != nil {
			t.Fatal(err)
		}
	}
	create := func(name string, src *csi.VolumeContentSource) (*csi.CreateVolumeResponse, error) {
		req := createReq(name, 0, nil)
		req.VolumeContentSource = src
		return p.CreateVolume(ctx, req)
	}
	for name, first := range map[string]*csi.VolumeContentSource{"from-snapshot": snapshotSource("a@snap-a"), "from-volume": volumeSource("a")} {
		if _, err := create(name, first); err != nil {
			t.Fatalf("CreateVolume %s: %v", name, err)
		}
		again, err := create(name, first)
		if err != nil {
			t.Fatalf("CreateVolume %s again from the same source: %v", name, err)
		}
		if got := again.GetVolume().GetContentSource(); !proto.Equal(got, first) {
			t.Fatalf("CreateVolume %s again: content source %v, want %v", name, got, first)
		}
		for _, other := range []*csi.VolumeContentSource{snapshotSource("b@snap-b"), volumeSource("b"), snapshotSource("a@snap-a"), volumeSource("a"), nil} {
			if proto.Equal(other, first) {
				continue
			}
			_, err := create(name, other)
			wantCode(t, fmt.Sprintf("CreateVolume %s again from %v", name, other), err, codes.AlreadyExists)
		}
	}
	// A volume made empty is not one cloned from anything.
	_, err := create("a", snapshotSource("b@snap-b"))
	wantCode(t, "CreateVolume of an empty volume again from a snapshot", err, codes.AlreadyExists)
	_, err = create("a", volumeSource("b"))
	wantCode(t, "CreateVolume of an empty volume again from a volume", err, codes.AlreadyExists)
}

func TestDeleteVolumeInUse(t *testing.T) {
	p, f := newTestPlugin(t)
	ctx := context.Background()
	if _, err := p.CreateVolume(ctx, createReq("v", 0, nil)); err != nil {
		t.Fatal(err)
	}
	f.busy["v"] = true
	_, err := p.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "v"})
	wantCode(t, "DeleteVolume of a busy disk", err, codes.FailedPrecondition)
	f.busy["v"] = false
	for range 2 {
		if _, err := p.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "v"}); err != nil {
			t.Fatalf("DeleteVolume: %v", err)
		}
	}
}

// TestOnlyItsOwnDisks: a disk of a volume's name that CSI did not make
// (weft disk create, the Docker plugin) is neither answered as the
// volume by CreateVolume nor removed by DeleteVolume; CSI's own volumes,
// made or cloned, are.
func TestOnlyItsOwnDisks(t *testing.T) {
	p, f := newTestPlugin(t)
	ctx := context.Background()
	f.disks["foreign"] = api.DiskInfo{Name: "foreign", Size: 1 << 30, BlockSize: api.DefaultBlockSize, Replicas: api.DefaultReplicas}
	f.disks["docker"] = api.DiskInfo{Name: "docker", Size: 1 << 30, BlockSize: api.DefaultBlockSize, Replicas: api.DefaultReplicas, Creator: "docker"}
	for _, name := range []string{"foreign", "docker"} {
		_, err := p.CreateVolume(ctx, createReq(name, 0, nil))
		wantCode(t, "CreateVolume over a disk CSI did not make, "+name, err, codes.AlreadyExists)
		_, err = p.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: name})
		wantCode(t, "DeleteVolume of a disk CSI did not make, "+name, err, codes.FailedPrecondition)
		if _, ok := f.disks[name]; !ok {
			t.Fatalf("DeleteVolume removed %s, a disk CSI did not make", name)
		}
	}

	if _, err := p.CreateVolume(ctx, createReq("mine", 0, nil)); err != nil {
		t.Fatal(err)
	}
	req := createReq("my-clone", 0, nil)
	req.VolumeContentSource = volumeSource("foreign")
	if _, err := p.CreateVolume(ctx, req); err != nil {
		t.Fatalf("CreateVolume cloned from a disk CSI did not make: %v", err)
	}
	for _, name := range []string{"mine", "my-clone"} {
		if got := f.disks[name].Creator; got != api.CreatorCSI {
			t.Fatalf("disk %s: creator %q, want %q", name, got, api.CreatorCSI)
		}
	}
	if _, err := p.CreateVolume(ctx, req); err != nil {
		t.Fatalf("CreateVolume of its clone again: %v", err)
	}
	for _, name := range []string{"mine", "my-clone"} {
		if _, err := p.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: name}); err != nil {
			t.Fatalf("DeleteVolume %s: %v", name, err)
		}
		if _, ok := f.disks[name]; ok {
			t.Fatalf("DeleteVolume left %s", name)
		}
	}
}

func TestCreateSnapshotNamesAreGlobal(t *testing.T) {
	p := newTestPluginWithVolumes(t, "a", "b")
	ctx := context.Background()
	s1, err := p.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: "a"})
	if err != nil || s1.GetSnapshot().GetSnapshotId() != "a@snap" {
		t.Fatalf("CreateSnapshot: %v, %v; want a@snap", s1, err)
	}
	s2, err := p.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: "a"})
	if err != nil || s2.GetSnapshot().GetSnapshotId() != "a@snap" {
		t.Fatalf("CreateSnapshot again: %v, %v; want a@snap", s2, err)
	}
	_, err = p.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: "b"})
	wantCode(t, "CreateSnapshot of the same name on another volume", err, codes.AlreadyExists)
	_, err = p.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap2", SourceVolumeId: "missing"})
	wantCode(t, "CreateSnapshot of a missing volume", err, codes.NotFound)
}

func TestStageRefusesToWriteAnotherNodesDisk(t *testing.T) {
	p, f := newTestPlugin(t)
	ctx := context.Background()
	f.disks["theirs"] = api.DiskInfo{Name: "theirs", Size: 1 << 20, BlockSize: 64 << 10, Owner: "peer-2"}
	vc := createReq("x", 0, nil).VolumeCapabilities[0]
	_, err := p.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "theirs", StagingTargetPath: t.TempDir(), VolumeCapability: vc})
	wantCode(t, "NodeStageVolume to write a disk another node owns", err, codes.FailedPrecondition)
	_, err = p.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "missing", StagingTargetPath: t.TempDir(), VolumeCapability: vc})
	wantCode(t, "NodeStageVolume of a missing volume", err, codes.NotFound)
}

func TestSnapshotsOfADeletedVolume(t *testing.T) {
	p := newTestPluginWithVolumes(t, "a", "b")
	ctx := context.Background()
	if _, err := p.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "a"}); err != nil {
		t.Fatal(err)
	}
	_, err := p.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: "b"})
	wantCode(t, "CreateSnapshot of a name a deleted volume's snapshot has", err, codes.AlreadyExists)
	list, err := p.ListSnapshots(ctx, &csi.ListSnapshotsRequest{})
	if err != nil || len(list.GetEntries()) != 1 || list.GetEntries()[0].GetSnapshot().GetSnapshotId() != "a@snap" {
		t.Fatalf("ListSnapshots: %v, %v; want a@snap, of the deleted volume", list, err)
	}
}

func TestPendingOperationIsAborted(t *testing.T) {
	p, _ := newTestPlugin(t)
	ctx := context.Background()
	unlock, err := p.lockOp("volume/v")
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.CreateVolume(ctx, createReq("v", 0, nil))
	wantCode(t, "CreateVolume while an operation on the volume is pending", err, codes.Aborted)
	_, err = p.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "v", TargetPath: t.TempDir()})
	wantCode(t, "NodeUnpublishVolume while an operation on the volume is pending", err, codes.Aborted)
	unlock()
	if _, err := p.CreateVolume(ctx, createReq("v", 0, nil)); err != nil {
		t.Fatalf("CreateVolume once the pending operation is done: %v", err)
	}
}
