package fusefs

import (
	"path/filepath"
	"sync"

	"github.com/weft-mesh/weft/volume"
)

// openFiles counts the open handles of each disk head's file, so that the
// daemon can refuse to remove a disk a program still has open. Safe for
// concurrent use.
type openFiles struct {
	mu     sync.Mutex
	byHead map[*volume.Head]*openDisk
}

type openDisk struct {
	file    *diskFile
	handles int
}

func newOpenFiles() *openFiles { return &openFiles{byHead: map[*volume.Head]*openDisk{}} }

func (o *openFiles) opened(f *diskFile) {
	o.mu.Lock()
	defer o.mu.Unlock()
	d := o.byHead[f.head]
	if d == nil {
		d = &openDisk{file: f}
		o.byHead[f.head] = d
	}
	d.handles++
}

func (o *openFiles) released(f *diskFile) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if d := o.byHead[f.head]; d != nil {
		if d.handles--; d.handles <= 0 {
			delete(o.byHead, f.head)
		}
	}
}

func (o *openFiles) handles(h *volume.Head) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if d := o.byHead[h]; d != nil {
		return d.handles
	}
	return 0
}

// removed returns the open files of disk heads named disk that are no
// longer the disk's head.
func (o *openFiles) removed(disk string, live func(*volume.Head) bool) []*diskFile {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*diskFile
	for h, d := range o.byHead {
		if h.Name() == disk && !live(h) {
			out = append(out, d.file)
		}
	}
	return out
}

// DiskPath returns the path of disk's file in the mount.
func (m *Mount) DiskPath(disk string) string { return filepath.Join(m.dir, disk+imgSuffix) }

// DiskHandles returns the number of open handles on the file of disk's
// head in this mount (a loop device on the file holds one). The kernel
// reports a close asynchronously, so a file closed a moment ago may still
// count.
func (m *Mount) DiskHandles(disk string) int {
	h, err := m.fs.cfg.Volumes.Head(disk)
	if err != nil {
		return 0
	}
	return m.fs.open.handles(h)
}

// DropRemovedDisk makes the kernel drop the pages it cached of the files
// of disk's removed heads that are still open, so that reads through them
// fail like every other request (EIO) instead of serving what was cached.
func (m *Mount) DropRemovedDisk(disk string) {
	live := func(h *volume.Head) bool {
		cur, err := m.fs.cfg.Volumes.Head(disk)
		return err == nil && cur == h
	}
	for _, f := range m.fs.open.removed(disk, live) {
		if errno := f.NotifyContent(0, 0); errno != 0 {
			m.log.Debug("fuse: drop the cache of a removed disk", "file", f.name(), "errno", errno.Error())
		}
	}
}
