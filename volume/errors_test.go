package volume

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/weft-mesh/weft/blockstore"
)

// TestSizeNotAWholeNumberOfBlocks: a disk size that is not a multiple of
// the block size is refused, never rounded; an imported image (whose
// length is not a choice) is padded to a whole block.
func TestSizeNotAWholeNumberOfBlocks(t *testing.T) {
	ctx := context.Background()
	m := openTestManager(t, t.TempDir(), blockstore.NewMemory(), &fakeClock{})
	_, err := m.CreateDisk(ctx, DiskSpec{Name: "d", Size: 4095})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "65536 would be") {
		t.Fatalf("create with size 4095: got %v, want ErrInvalid naming 65536", err)
	}
	if _, err := m.DiskInfo(ctx, "d"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused create left disk d: %v", err)
	}
	info, err := m.Import(ctx, DiskSpec{Name: "i", BlockSize: 4096}, bytes.NewReader(make([]byte, 5000)))
	if err != nil || info.Size != 8192 {
		t.Fatalf("import of 5000 bytes in 4K blocks: size %d, %v; want 8192", info.Size, err)
	}
}

// TestRefErrorsSayWhatIsMissing: the errors of replica create, restore and
// clone name what is wrong, once, and not a commit that did not fail.
func TestRefErrorsSayWhatIsMissing(t *testing.T) {
	ctx := context.Background()
	m := openTestManager(t, t.TempDir(), blockstore.NewMemory(), &fakeClock{})
	if _, err := m.CreateDisk(ctx, DiskSpec{Name: "d", Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateReplica(ctx, "d", "r1"); err != nil {
		t.Fatal(err)
	}
	ubuntu, _ := ParseRef("ubuntu@1")
	d9, _ := ParseRef("d@9")
	_, createErr := m.CreateReplica(ctx, "d", "r1")
	_, restoreErr := m.Restore(ctx, "d", "nope")
	_, cloneErr := m.Clone(ctx, ubuntu, "c", "")
	_, cloneReplicaErr := m.Clone(ctx, d9, "c", "")
	for _, c := range []struct {
		what string
		err  error
		want error
		msg  string
	}{
		{"create an existing replica", createErr, ErrExists, `replica "r1" of disk "d": already exists`},
		{"restore a missing replica", restoreErr, ErrNotFound, `replica "nope" of disk "d": not found`},
		{"clone a missing spacesuit", cloneErr, ErrNotFound, `spacesuit ubuntu@1: not found`},
		{"clone a missing replica", cloneReplicaErr, ErrNotFound, `replica "9" of disk "d": not found`},
	} {
		if !errors.Is(c.err, c.want) || c.err.Error() != c.msg {
			t.Errorf("%s: got %v, want %q (%v)", c.what, c.err, c.msg, c.want)
		}
	}
}
