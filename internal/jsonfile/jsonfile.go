// Package jsonfile keeps a value in a small JSON file, replaced durably
// (see atomicfile): the daemon's config, the volume catalog, the mesh's
// known peers and the like.
package jsonfile

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"

	"github.com/weft-mesh/weft/internal/atomicfile"
)

// Load decodes the file at path into v, which keeps what the file does not
// set (defaults). A missing file leaves v alone and returns an error
// matching fs.ErrNotExist, for callers to whom absence means "empty".
func Load(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// Save writes v to path as indented JSON, atomically and durably, with
// permissions perm. Errors wrap the underlying ones (errors.Is works with
// syscall.ENOSPC).
func Save(path string, v any, perm fs.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return atomicfile.Write(path, append(b, '\n'), perm)
}
