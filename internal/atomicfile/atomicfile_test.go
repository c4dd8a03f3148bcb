package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/weft-mesh/weft/internal/powerloss"
)

func TestWriteReplacesWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.json")
	for _, content := range []string{"first", "second, longer"} {
		if err := Write(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("read back %q, %v; want %q", got, err, content)
		}
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the file (no temporaries left)", len(entries))
	}
}

func TestWriteIntoMissingDirectoryFails(t *testing.T) {
	if err := Write(filepath.Join(t.TempDir(), "no", "f"), []byte("x"), 0o600); err == nil {
		t.Fatal("write into a missing directory: got nil error")
	}
}

// TestFailedSyncStopsTheRename: the temporary file's fsync fails once. Its
// data may be lost (Linux reports a writeback error once and may drop the
// pages), so the rename must not follow: the old content stays, now and
// after a power loss, and the temporary goes.
func TestFailedSyncStopsTheRename(t *testing.T) {
	fs := powerloss.New(6)
	const dir, path = "/d", "/d/f"
	if err := MkdirAllIn(fs, dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteIn(fs, path, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	var failed, renamed atomic.Bool
	fs.SetFault(func(op errorfs.Op) error {
		switch {
		case op.Kind == errorfs.OpFileSync && strings.Contains(op.Path, ".tmp") && !failed.Swap(true):
			return powerloss.ErrIO
		case op.Kind == errorfs.OpRename && failed.Load():
			renamed.Store(true)
		}
		return nil
	})
	if err := WriteIn(fs, path, []byte("second"), 0o600); !errors.Is(err, powerloss.ErrIO) {
		t.Fatalf("write whose fsync fails: got %v, want EIO", err)
	}
	if renamed.Load() {
		t.Fatal("the temporary file was renamed into place after its fsync failed")
	}
	for _, fsys := range []vfs.FS{fs, fs.CrashNow()} {
		got, err := readFile(fsys, path)
		if err != nil || string(got) != "first" {
			t.Fatalf("read back %q, %v; want the old content %q", got, err, "first")
		}
	}
	if names, err := fs.List(dir); err != nil || len(names) != 1 {
		t.Fatalf("directory holds %q, %v; want only the file (the temporary removed)", names, err)
	}
	if err := WriteIn(fs, path, []byte("third"), 0o600); err != nil {
		t.Fatalf("write once the device works again: %v", err)
	}
}

func readFile(fsys vfs.FS, path string) ([]byte, error) {
	f, err := fsys.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}
