package fusefs

import (
	"context"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/weft-mesh/weft/volume"
)

// replicasDir is DIR/replicas: a directory per disk with replicas. It
// lists the live disks that have replicas; the replicas of a removed disk
// are reached by name (DIR/replicas/<disk>/...) but not listed.
type replicasDir struct {
	fs.Inode
	fs *filesys
}

var (
	_ fs.NodeLookuper  = (*replicasDir)(nil)
	_ fs.NodeReaddirer = (*replicasDir)(nil)
	_ fs.NodeGetattrer = (*replicasDir)(nil)
)

func (d *replicasDir) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fs.dirAttr(&out.Attr, inoReplicas)
	return 0
}

func (d *replicasDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if volume.ValidateName(name) != nil {
		return nil, syscall.ENOENT
	}
	reps, err := d.fs.cfg.Volumes.ListReplicas(ctx, name)
	if err != nil {
		return nil, d.fs.errno("lookup", replicasName+"/"+name, err)
	}
	if len(reps) == 0 {
		return nil, syscall.ENOENT
	}
	ino := d.fs.inos.ino(replicaDirKey{name})
	d.fs.dirAttr(&out.Attr, ino)
	return d.NewInode(ctx, &replicaDiskDir{fs: d.fs, disk: name}, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino}), 0
}

func (d *replicasDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	disks, err := d.fs.cfg.Volumes.ReplicaDisks(ctx)
	if err != nil {
		return nil, d.fs.errno("list disks", replicasName, err)
	}
	var out []fuse.DirEntry
	for _, name := range disks { // removed disks whose replicas remain too
		out = append(out, fuse.DirEntry{Name: name, Mode: syscall.S_IFDIR, Ino: d.fs.inos.ino(replicaDirKey{name})})
	}
	return fs.NewListDirStream(out), 0
}

// replicaDiskDir is DIR/replicas/<disk>: a file per replica of the disk.
type replicaDiskDir struct {
	fs.Inode
	fs   *filesys
	disk string
}

var (
	_ fs.NodeLookuper  = (*replicaDiskDir)(nil)
	_ fs.NodeReaddirer = (*replicaDiskDir)(nil)
	_ fs.NodeGetattrer = (*replicaDiskDir)(nil)
)

func (d *replicaDiskDir) path() string { return replicasName + "/" + d.disk }

func (d *replicaDiskDir) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fs.dirAttr(&out.Attr, d.fs.inos.ino(replicaDirKey{d.disk}))
	return 0
}

func (d *replicaDiskDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	rep, ok := strings.CutSuffix(name, imgSuffix)
	if !ok || volume.ValidateName(rep) != nil {
		return nil, syscall.ENOENT
	}
	info, errno := findReplica(ctx, d.fs, d.disk, rep)
	if errno != 0 {
		return nil, errno
	}
	n := &replicaFile{fs: d.fs, info: info}
	n.attr(&out.Attr)
	return d.NewInode(ctx, n, fs.StableAttr{Mode: syscall.S_IFREG, Ino: n.ino()}), 0
}

func (d *replicaDiskDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	reps, err := d.fs.cfg.Volumes.ListReplicas(ctx, d.disk)
	if err != nil {
		return nil, d.fs.errno("list replicas", d.path(), err)
	}
	out := make([]fuse.DirEntry, 0, len(reps))
	for _, r := range reps {
		ino := d.fs.inos.ino(replicaKey{r.Disk, r.Name, r.Root})
		out = append(out, fuse.DirEntry{Name: r.Name + imgSuffix, Mode: syscall.S_IFREG, Ino: ino})
	}
	return fs.NewListDirStream(out), 0
}

// findReplica returns the replica's current description, or ENOENT.
func findReplica(ctx context.Context, f *filesys, disk, name string) (volume.ReplicaInfo, syscall.Errno) {
	reps, err := f.cfg.Volumes.ListReplicas(ctx, disk)
	if err != nil {
		return volume.ReplicaInfo{}, f.errno("lookup", replicasName+"/"+disk+"/"+name+imgSuffix, err)
	}
	for _, r := range reps {
		if r.Name == name {
			return r, 0
		}
	}
	return volume.ReplicaInfo{}, syscall.ENOENT
}

// replicaFile is DIR/replicas/<disk>/<replica>.img: one replica at one
// root, read-only.
type replicaFile struct {
	fs.Inode
	fs   *filesys
	info volume.ReplicaInfo
}

// viewHandle is an open replica file. Its view pins the replica's blocks,
// so the file stays readable if the replica is removed meanwhile.
type viewHandle struct {
	view *volume.View
}

var (
	_ fs.NodeGetattrer   = (*replicaFile)(nil)
	_ fs.NodeSetattrer   = (*replicaFile)(nil)
	_ fs.NodeAccesser    = (*replicaFile)(nil)
	_ fs.NodeOpener      = (*replicaFile)(nil)
	_ fs.NodeReader      = (*replicaFile)(nil)
	_ fs.NodeWriter      = (*replicaFile)(nil)
	_ fs.NodeReleaser    = (*replicaFile)(nil)
	_ fs.NodeOnForgetter = (*replicaFile)(nil)
)

func (n *replicaFile) key() replicaKey { return replicaKey{n.info.Disk, n.info.Name, n.info.Root} }

func (n *replicaFile) ino() uint64 { return n.fs.inos.ino(n.key()) }

func (n *replicaFile) path() string {
	return replicasName + "/" + n.info.Disk + "/" + n.info.Name + imgSuffix
}

func (n *replicaFile) ref() volume.Ref { return volume.Ref{Disk: n.info.Disk, Replica: n.info.Name} }

// live reports whether the replica still names the root of this inode.
func (n *replicaFile) live(ctx context.Context) bool {
	info, errno := findReplica(ctx, n.fs, n.info.Disk, n.info.Name)
	return errno == 0 && info.Root == n.info.Root
}

func (n *replicaFile) attr(a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | 0o444
	a.Ino = n.ino()
	a.Nlink = 1
	a.Size = uint64(n.info.Size)
	a.Blocks = uint64(n.info.UsedBytes+511) / 512
	a.Blksize = uint32(min(n.info.BlockSize, int64(n.fs.cfg.MaxWrite)))
	t := n.info.Created
	a.SetTimes(&t, &t, &t)
}

func (n *replicaFile) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if f == nil && !n.live(ctx) {
		return syscall.ENOENT
	}
	n.attr(&out.Attr)
	return 0
}

func (n *replicaFile) Setattr(ctx context.Context, _ fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func (n *replicaFile) Access(ctx context.Context, mask uint32) syscall.Errno {
	if mask&2 != 0 { // W_OK
		return syscall.EROFS
	}
	return 0
}

func (n *replicaFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	v, err := n.fs.cfg.Volumes.OpenView(ctx, n.ref())
	if err != nil {
		return nil, 0, n.fs.errno("open", n.path(), err)
	}
	if v.Root() != n.info.Root {
		v.Close() // the name now stands for another root
		return nil, 0, syscall.ENOENT
	}
	fuseFlags := uint32(fuse.FOPEN_KEEP_CACHE) // the content of a root never changes
	if n.fs.cfg.DirectIO {
		fuseFlags = fuse.FOPEN_DIRECT_IO
	}
	return &viewHandle{view: v}, fuseFlags, 0
}

func (n *replicaFile) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h, ok := f.(*viewHandle)
	if !ok {
		return nil, syscall.EBADF
	}
	size := h.view.Size()
	if off >= size {
		return fuse.ReadResultData(nil), 0
	}
	p := dest[:min(int64(len(dest)), size-off)]
	if _, err := h.view.ReadAt(p, off); err != nil {
		return nil, n.fs.ioErrno("read", n.path(), err)
	}
	return fuse.ReadResultData(p), 0
}

func (n *replicaFile) Write(ctx context.Context, _ fs.FileHandle, _ []byte, _ int64) (uint32, syscall.Errno) {
	return 0, syscall.EROFS
}

func (n *replicaFile) Release(ctx context.Context, f fs.FileHandle) syscall.Errno {
	if h, ok := f.(*viewHandle); ok {
		h.view.Close()
	}
	return 0
}

// OnForget drops the inode number of a replica name that now means
// another root or nothing.
func (n *replicaFile) OnForget() {
	if !n.live(context.Background()) {
		n.fs.inos.forget(n.key())
	}
}
