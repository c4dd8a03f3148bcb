// Package atomicfile replaces small files durably: a crash leaves either
// the old content or the new, whole, never a mix or nothing.
package atomicfile

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Write replaces path with data: it writes a temporary file in the same
// directory, fsyncs it, renames it over path and fsyncs the directory.
// Errors wrap the underlying ones (errors.Is works with syscall.ENOSPC).
func Write(path string, data []byte, perm fs.FileMode) error {
	return WriteIn(vfs.Default, path, data, perm)
}

// WriteIn is Write on the file system vfsys. On another than the OS's (a
// crashable in-memory one in power-loss tests) perm is not applied: a
// vfs.FS has no permissions.
func WriteIn(vfsys vfs.FS, path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	f, tmp, err := createTemp(vfsys, path, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer vfsys.Remove(tmp) // fails harmlessly after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := vfsys.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return SyncDirIn(vfsys, dir)
}

type tempFile interface {
	io.WriteCloser
	Sync() error
}

// createTemp creates a new temporary file next to path. On the OS's file
// system it is made with mode perm before anything is written to it, so
// that nobody can open it with more access than path will give.
func createTemp(vfsys vfs.FS, path string, perm fs.FileMode) (tempFile, string, error) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	if vfsys == vfs.Default {
		f, err := os.CreateTemp(dir, "."+base+".tmp*")
		if err != nil {
			return nil, "", err
		}
		if err := f.Chmod(perm); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, "", err
		}
		return f, f.Name(), nil
	}
	tmp := filepath.Join(dir, "."+base+".tmp"+rand.Text())
	f, err := vfsys.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, "", err
	}
	return f, tmp, nil
}

// SyncDir fsyncs a directory, making renames and creations in it durable.
func SyncDir(dir string) error { return SyncDirIn(vfs.Default, dir) }

// SyncDirIn is SyncDir on the file system vfsys.
func SyncDirIn(vfsys vfs.FS, dir string) error {
	d, err := vfsys.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// MkdirAllIn is os.MkdirAll on the file system vfsys that also makes the
// new directories durable: it fsyncs the parent of each one it creates, so
// that a power loss cannot take away a directory whose files were synced.
func MkdirAllIn(vfsys vfs.FS, dir string, perm fs.FileMode) error {
	dir = filepath.Clean(dir)
	var created []string // deepest first
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := vfsys.Stat(d); err == nil || !errors.Is(err, fs.ErrNotExist) {
			break
		}
		created = append(created, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := vfsys.MkdirAll(dir, perm); err != nil {
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	for _, d := range created {
		if err := SyncDirIn(vfsys, filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}
