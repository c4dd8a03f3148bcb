// Command fuseceiling serves one file over FUSE whose writes are thrown
// away and whose reads return zeros, mounted the way weft mounts its disks
// (same request size, readahead and mount path). It does no work, so what
// it reaches through the kernel is the ceiling of any FUSE server on the
// machine: scripts/bench-fuse.sh measures it beside weft's FUSE file and a
// local file, so the cost of FUSE itself is told apart from weft's.
//
//	fuseceiling [--size BYTES] DIR
//
// serves DIR/ceiling.img until SIGINT or SIGTERM, then unmounts.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/weft-mesh/weft/node/fusefs"
)

// fileName is the one file in the mount.
const fileName = "ceiling.img"

func main() {
	size := flag.Int64("size", 1<<30, "size of the file in bytes")
	flag.Parse()
	if flag.NArg() != 1 || *size <= 0 {
		fmt.Fprintln(os.Stderr, "usage: fuseceiling [--size BYTES] DIR")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, flag.Arg(0), &root{size: *size}, nil); err != nil {
		fmt.Fprintln(os.Stderr, "fuseceiling:", err)
		os.Exit(1)
	}
}

// serve mounts r at dir, closes ready (if not nil) once the kernel serves
// it, and unmounts when ctx is done.
func serve(ctx context.Context, dir string, r *root, ready chan<- struct{}) error {
	cfg := fusefs.DefaultConfig()
	maxWrite := cfg.MaxWrite
	mopts := fusefs.MountOptions(maxWrite)
	mopts.FsName, mopts.Name = "fuseceiling", "fuseceiling"
	srv, err := fs.Mount(dir, r, &fs.Options{MountOptions: mopts, AttrTimeout: &cfg.AttrTimeout})
	if err != nil {
		return fmt.Errorf("mount %s: %w", dir, err)
	}
	if err := fusefs.RaiseReadahead(dir, maxWrite); err != nil {
		fmt.Fprintln(os.Stderr, "fuseceiling: readahead left at the kernel default:", err)
	}
	if ready != nil {
		close(ready)
	}
	done := make(chan struct{})
	go func() {
		srv.Wait()
		close(done)
	}()
	select {
	case <-done:
		return errors.New("unmounted from outside")
	case <-ctx.Done():
	}
	if err := srv.Unmount(); err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	<-done
	return nil
}

type root struct {
	fs.Inode
	size    int64
	onWrite func() // called by every write, for tests
}

var _ fs.NodeOnAdder = (*root)(nil)

func (r *root) OnAdd(ctx context.Context) {
	f := r.NewPersistentInode(ctx, &file{size: r.size, onWrite: r.onWrite}, fs.StableAttr{Ino: 2})
	r.AddChild(fileName, f, false)
}

// file is the null file: every method succeeds without touching data.
type file struct {
	fs.Inode
	size    int64
	onWrite func()
}

var (
	_ fs.NodeGetattrer = (*file)(nil)
	_ fs.NodeSetattrer = (*file)(nil)
	_ fs.NodeOpener    = (*file)(nil)
	_ fs.NodeReader    = (*file)(nil)
	_ fs.NodeWriter    = (*file)(nil)
	_ fs.NodeFsyncer   = (*file)(nil)
	_ fs.NodeFlusher   = (*file)(nil)
)

func (f *file) attr(a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | 0o644
	a.Size = uint64(f.size)
	a.Blocks = (a.Size + 511) / 512
	a.Nlink = 1
}

func (f *file) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.attr(&out.Attr)
	return 0
}

// Setattr keeps the size fixed, as a weft disk file does.
func (f *file) Setattr(ctx context.Context, _ fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok && int64(sz) != f.size {
		return syscall.EPERM
	}
	f.attr(&out.Attr)
	return 0
}

// Open opens the file as weft opens a disk file.
func (f *file) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return nil, fusefs.OpenFlags(flags, false), 0
}

func (f *file) Read(ctx context.Context, _ fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	p := dest[:max(0, min(int64(len(dest)), f.size-off))]
	clear(p)
	return fuse.ReadResultData(p), 0
}

func (f *file) Write(ctx context.Context, _ fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if off >= f.size {
		return 0, syscall.EFBIG
	}
	if f.onWrite != nil {
		f.onWrite()
	}
	return uint32(min(int64(len(data)), f.size-off)), 0
}

func (f *file) Fsync(ctx context.Context, _ fs.FileHandle, _ uint32) syscall.Errno { return 0 }

func (f *file) Flush(ctx context.Context, _ fs.FileHandle) syscall.Errno { return 0 }
