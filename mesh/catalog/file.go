package catalog

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/weft-mesh/weft/internal/atomicfile"
)

// Save writes the catalog's snapshot to path atomically, readable by the
// owner only: a crash leaves the previous file or the new one.
func (c *Catalog) Save(path string) error {
	b, err := Encode(c.Snapshot())
	if err != nil {
		return fmt.Errorf("save catalog %s: %w", path, err)
	}
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return fmt.Errorf("save catalog: %w", err)
	}
	return nil
}

// Load reads a catalog written by Save for the node whose peer ID string is
// self. A missing file gives an empty catalog. The clock restarts from the
// largest stored version, which is enough for this node's next write to
// beat every stored version of its key.
func Load(path, self string) (*Catalog, error) {
	c := New(self)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load catalog: %w", err)
	}
	defer f.Close()
	// Read one byte past the limit so that an oversized file is refused
	// without reading all of it.
	b, err := io.ReadAll(io.LimitReader(f, MaxEncodedSize+1))
	if err != nil {
		return nil, fmt.Errorf("load catalog: %w", err)
	}
	es, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("load catalog %s: %w", path, err)
	}
	c.Merge(es)
	return c, nil
}
