package volume

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/weft-mesh/weft/blockstore"
)

// A disk and a spacesuit cannot share a name: the doors resolve names,
// and a disk's access rules would otherwise apply to a spacesuit of the
// same name, or the reverse (a review found "gold@1" open to anyone when
// a disk gold with an allow-list and a spacesuit gold both existed).
// Creating, importing or cloning a disk with a spacesuit's name, and
// publishing or keeping a spacesuit with a disk's name, are refused with
// ErrExists; NameKind says which holds a name.
func TestDisksAndSpacesuitsShareOneNamespace(t *testing.T) {
	ctx := context.Background()
	m := openWithDisk(t, t.TempDir(), blockstore.NewMemory(), "gold")
	defer m.Close()
	if _, err := m.CreateDisk(ctx, DiskSpec{Name: "src", Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.PublishSpacesuit(ctx, "image", Ref{Disk: "src"}, 0); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]Kind{"gold": KindDisk, "image": KindSpacesuit, "nothing": KindNone} {
		if got := m.NameKind(name); got != want {
			t.Errorf("NameKind(%q): got %v, want %v", name, got, want)
		}
	}

	_, err := m.PublishSpacesuit(ctx, "gold", Ref{Disk: "src"}, 0)
	wantTaken(t, "publish a spacesuit named as a disk", err)
	info := SpacesuitInfo{Name: "gold", Version: 7, Size: 1 << 20, BlockSize: DefaultBlockSize}
	root := m.ListSpacesuits(ctx)[0].Root
	wantTaken(t, "keep (push, pull) a spacesuit named as a disk", m.KeepSpacesuit(ctx, info, root))

	_, err = m.CreateDisk(ctx, DiskSpec{Name: "image", Size: 1 << 20})
	wantTaken(t, "create a disk named as a spacesuit", err)
	_, err = m.Import(ctx, DiskSpec{Name: "image"}, bytes.NewReader(make([]byte, 4096)))
	wantTaken(t, "import a disk named as a spacesuit", err)
	_, err = m.Clone(ctx, Ref{Disk: "src"}, "image", "")
	wantTaken(t, "clone to a disk named as a spacesuit", err)

	// A spacesuit's next version, and a disk's own name, are fine.
	if _, err := m.PublishSpacesuit(ctx, "image", Ref{Disk: "src"}, 0); err != nil {
		t.Fatalf("a second version of a spacesuit: got %v, want nil", err)
	}
	if got := m.NameKind("gold"); got != KindDisk {
		t.Fatalf("after the refusals: NameKind(gold) got %v, want disk", got)
	}
}

func wantTaken(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrExists) {
		t.Errorf("%s: got %v, want ErrExists (disks and spacesuits share one namespace)", what, err)
	}
}
