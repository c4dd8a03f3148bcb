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
	_ fs.NodeRmdirer   = (*replicasDir)(nil)
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

// Rmdir refuses (replicas are removed with weft replica rm), where
// go-fuse would otherwise report success.
func (d *replicasDir) Rmdir(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }

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
	_ fs.NodeUnlinker  = (*replicaDiskDir)(nil)
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
	img, errno := findReplica(ctx, d.fs, d.disk, rep)
	if errno != 0 {
		return nil, errno
	}
	n := &imageFile{fs: d.fs, img: img}
	n.attr(&out.Attr)
	return d.NewInode(ctx, n, fs.StableAttr{Mode: syscall.S_IFREG, Ino: n.ino()}), 0
}

// Unlink refuses (replicas are removed with weft replica rm), where
// go-fuse would otherwise report success.
func (d *replicaDiskDir) Unlink(ctx context.Context, name string) syscall.Errno {
	return syscall.EROFS
}

func (d *replicaDiskDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	reps, err := d.fs.cfg.Volumes.ListReplicas(ctx, d.disk)
	if err != nil {
		return nil, d.fs.errno("list replicas", d.path(), err)
	}
	out := make([]fuse.DirEntry, 0, len(reps))
	for _, r := range reps {
		ino := d.fs.inos.ino(replicaImageOf(r).key())
		out = append(out, fuse.DirEntry{Name: r.Name + imgSuffix, Mode: syscall.S_IFREG, Ino: ino})
	}
	return fs.NewListDirStream(out), 0
}

// findReplica returns the replica's current description, or ENOENT.
func findReplica(ctx context.Context, f *filesys, disk, name string) (image, syscall.Errno) {
	reps, err := f.cfg.Volumes.ListReplicas(ctx, disk)
	if err != nil {
		return image{}, f.errno("lookup", replicasName+"/"+disk+"/"+name+imgSuffix, err)
	}
	for _, r := range reps {
		if r.Name == name {
			return replicaImageOf(r), 0
		}
	}
	return image{}, syscall.ENOENT
}

func replicaImageOf(r volume.ReplicaInfo) image {
	return image{
		kind: replicaImage, ref: volume.Ref{Disk: r.Disk, Replica: r.Name}, root: r.Root,
		size: r.Size, blockSize: r.BlockSize, usedBytes: r.UsedBytes, created: r.Created,
	}
}
