package fusefs

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/weft-mesh/weft/volume"
)

// Names in the tree.
const (
	imgSuffix     = ".img"
	replicasName  = "replicas"
	spacesuitName = "spacesuits"
)

// Inode numbers of the fixed directories; the others are handed out from
// firstIno on.
const (
	inoRoot = 1 + iota
	inoReplicas
	inoSpacesuits
	firstIno
)

// filesys is what every node of one mount shares.
type filesys struct {
	cfg     Config
	log     *slog.Logger
	started time.Time
	inos    *inodes
	open    *openFiles
}

// inodes hands out one inode number per incarnation of a file: a disk head
// (a *volume.Head: a disk removed and recreated gets a new one), an image
// (a replica or spacesuit version at one root: imageKey) or a replica
// directory (disk). Equal numbers make go-fuse reuse the live node, so a
// file keeps its inode, and its page cache, across lookups.
type inodes struct {
	mu   sync.Mutex
	next uint64
	byID map[any]uint64
}

type replicaDirKey struct{ disk string }

func newInodes() *inodes { return &inodes{next: firstIno, byID: map[any]uint64{}} }

func (t *inodes) ino(id any) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, ok := t.byID[id]
	if !ok {
		n = t.next
		t.next++
		t.byID[id] = n
	}
	return n
}

// forget drops an incarnation that can never come back (a removed head).
func (t *inodes) forget(id any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.byID, id)
}

// setTimes fills the times of a, which never change: the mount's start.
func (f *filesys) setTimes(a *fuse.Attr) {
	a.SetTimes(&f.started, &f.started, &f.started)
}

func (f *filesys) dirAttr(a *fuse.Attr, ino uint64) {
	a.Mode = syscall.S_IFDIR | 0o555
	a.Ino = ino
	a.Nlink = 2
	f.setTimes(a)
}

// rootDir is DIR: a file per disk (read-only for a disk another node
// owns) and the replicas and spacesuits directories.
type rootDir struct {
	fs.Inode
	fs *filesys
}

var (
	_ fs.NodeLookuper  = (*rootDir)(nil)
	_ fs.NodeReaddirer = (*rootDir)(nil)
	_ fs.NodeGetattrer = (*rootDir)(nil)
	_ fs.NodeStatfser  = (*rootDir)(nil)
	_ fs.NodeUnlinker  = (*rootDir)(nil)
	_ fs.NodeRmdirer   = (*rootDir)(nil)
)

func (d *rootDir) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fs.dirAttr(&out.Attr, inoRoot)
	return 0
}

func (d *rootDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	switch name {
	case replicasName:
		d.fs.dirAttr(&out.Attr, inoReplicas)
		return d.NewInode(ctx, &replicasDir{fs: d.fs}, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: inoReplicas}), 0
	case spacesuitName:
		d.fs.dirAttr(&out.Attr, inoSpacesuits)
		return d.NewInode(ctx, &spacesuitsDir{fs: d.fs}, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: inoSpacesuits}), 0
	}
	disk, ok := strings.CutSuffix(name, imgSuffix)
	if !ok || volume.ValidateName(disk) != nil {
		return nil, syscall.ENOENT
	}
	h, err := d.fs.cfg.Volumes.Head(disk)
	if errors.Is(err, volume.ErrNotFound) {
		if img, errno := findRemoteDisk(ctx, d.fs, disk); errno == 0 {
			n := &imageFile{fs: d.fs, img: img}
			n.attr(&out.Attr)
			return d.NewInode(ctx, n, fs.StableAttr{Mode: syscall.S_IFREG, Ino: n.ino()}), 0
		}
	}
	if err != nil {
		return nil, d.fs.errno("lookup", name, err)
	}
	n := &diskFile{fs: d.fs, head: h}
	n.attr(&out.Attr)
	return d.NewInode(ctx, n, fs.StableAttr{Mode: syscall.S_IFREG, Ino: n.ino()}), 0
}

func (d *rootDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	disks, err := d.fs.cfg.Volumes.ListDisks(ctx)
	if err != nil {
		return nil, d.fs.errno("list disks", "", err)
	}
	out := []fuse.DirEntry{
		{Name: replicasName, Mode: syscall.S_IFDIR, Ino: inoReplicas},
		{Name: spacesuitName, Mode: syscall.S_IFDIR, Ino: inoSpacesuits},
	}
	for _, info := range disks {
		h, err := d.fs.cfg.Volumes.Head(info.Name)
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, fuse.DirEntry{Name: info.Name + imgSuffix, Mode: syscall.S_IFREG, Ino: d.fs.inos.ino(h)})
	}
	if d.fs.cfg.Remote != nil {
		for _, info := range d.fs.cfg.Remote.RemoteDisks(ctx) {
			img := remoteDiskImageOf(info)
			out = append(out, fuse.DirEntry{Name: info.Name + imgSuffix, Mode: syscall.S_IFREG, Ino: d.fs.inos.ino(img.key())})
		}
	}
	return fs.NewListDirStream(out), 0
}

// Unlink refuses to remove a file, which go-fuse would otherwise report
// as done: a disk this node owns is removed with weft disk rm, which
// refuses while the disk is in use (EPERM); a disk another node owns is
// read-only here (EROFS).
func (d *rootDir) Unlink(ctx context.Context, name string) syscall.Errno {
	if disk, ok := strings.CutSuffix(name, imgSuffix); ok {
		if _, err := d.fs.cfg.Volumes.Head(disk); err == nil {
			return syscall.EPERM
		}
	}
	return syscall.EROFS
}

// Rmdir refuses: the replicas and spacesuits directories are fixed.
func (d *rootDir) Rmdir(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }

// Statfs reports the mount as full and read-only in shape: nothing can be
// created in it, and its size is not a store's free space.
func (d *rootDir) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	out.Bsize = 4096
	out.Frsize = 4096
	out.NameLen = 255
	return 0
}
