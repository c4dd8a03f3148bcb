package fusefs

import (
	"context"
	"strconv"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/weft-mesh/weft/volume"
)

// spacesuitsDir is DIR/spacesuits: a file per spacesuit version on this
// node, named <name>@<version>.img.
type spacesuitsDir struct {
	fs.Inode
	fs *filesys
}

var (
	_ fs.NodeLookuper  = (*spacesuitsDir)(nil)
	_ fs.NodeReaddirer = (*spacesuitsDir)(nil)
	_ fs.NodeGetattrer = (*spacesuitsDir)(nil)
	_ fs.NodeUnlinker  = (*spacesuitsDir)(nil)
)

func (d *spacesuitsDir) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fs.dirAttr(&out.Attr, inoSpacesuits)
	return 0
}

func (d *spacesuitsDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ref, ok := strings.CutSuffix(name, imgSuffix)
	if !ok {
		return nil, syscall.ENOENT
	}
	// Only the spelling the listing shows: "a@01" is not a name of a@1, so
	// each version has one file name.
	suit, version, err := volume.ParseSpacesuitRef(ref)
	if err != nil || volume.SpacesuitRef(suit, version) != ref {
		return nil, syscall.ENOENT
	}
	img, errno := findSpacesuit(ctx, d.fs, spacesuitViewRef(suit, version))
	if errno != 0 {
		return nil, errno
	}
	n := &imageFile{fs: d.fs, img: img}
	n.attr(&out.Attr)
	return d.NewInode(ctx, n, fs.StableAttr{Mode: syscall.S_IFREG, Ino: n.ino()}), 0
}

// Unlink refuses (spacesuit versions are removed with weft spacesuit
// rm), where go-fuse would otherwise report success.
func (d *spacesuitsDir) Unlink(ctx context.Context, name string) syscall.Errno {
	return syscall.EROFS
}

func (d *spacesuitsDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	suits := d.fs.cfg.Volumes.ListSpacesuits(ctx)
	out := make([]fuse.DirEntry, 0, len(suits))
	for _, s := range suits {
		ino := d.fs.inos.ino(spacesuitImageOf(s).key())
		out = append(out, fuse.DirEntry{Name: s.Ref + imgSuffix, Mode: syscall.S_IFREG, Ino: ino})
	}
	return fs.NewListDirStream(out), 0
}

// findSpacesuit returns the current description of the spacesuit version
// ref (as spacesuitViewRef makes it), or ENOENT.
func findSpacesuit(ctx context.Context, f *filesys, ref volume.Ref) (image, syscall.Errno) {
	want := ref.String()
	for _, s := range f.cfg.Volumes.ListSpacesuits(ctx) {
		if s.Ref == want {
			return spacesuitImageOf(s), 0
		}
	}
	return image{}, syscall.ENOENT
}

// spacesuitViewRef is the Ref OpenView opens spacesuit name@version by.
func spacesuitViewRef(name string, version uint64) volume.Ref {
	return volume.Ref{Disk: name, Replica: strconv.FormatUint(version, 10)}
}

func spacesuitImageOf(s volume.SpacesuitInfo) image {
	return image{
		kind: spacesuitImage, ref: spacesuitViewRef(s.Name, s.Version), root: s.Root,
		size: s.Size, blockSize: s.BlockSize,
		// The manager does not count a spacesuit's blocks; report it as
		// fully allocated, like a disk file, rather than as empty.
		usedBytes: s.Size, created: s.Created,
	}
}
