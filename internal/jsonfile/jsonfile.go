// Package jsonfile keeps a value in a small JSON file, replaced durably
// (see atomicfile): the daemon's config, the volume catalog, the mesh's
// known peers and the like.
package jsonfile

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weft-mesh/weft/internal/atomicfile"
)

// Load decodes the file at path into v, which keeps what the file does not
// set (defaults). A missing file leaves v alone and returns an error
// matching fs.ErrNotExist, for callers to whom absence means "empty".
func Load(path string, v any) error { return LoadIn(vfs.Default, path, v) }

// LoadIn is Load from the file system vfsys.
func LoadIn(vfsys vfs.FS, path string, v any) error {
	b, err := readFile(vfsys, path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

func readFile(vfsys vfs.FS, path string) ([]byte, error) {
	if vfsys == vfs.Default {
		return os.ReadFile(path)
	}
	f, err := vfsys.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// Save writes v to path as indented JSON, atomically and durably, with
// permissions perm. Errors wrap the underlying ones (errors.Is works with
// syscall.ENOSPC).
func Save(path string, v any, perm fs.FileMode) error { return SaveIn(vfs.Default, path, v, perm) }

// SaveIn is Save on the file system vfsys (see atomicfile.WriteIn).
func SaveIn(vfsys vfs.FS, path string, v any, perm fs.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return atomicfile.WriteIn(vfsys, path, append(b, '\n'), perm)
}
