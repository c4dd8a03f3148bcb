package node

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestLoopDevices reads which files back the loop devices from a fake
// sysfs tree: bound devices by their backing file, unbound ones not at all.
func TestLoopDevices(t *testing.T) {
	sys := t.TempDir()
	bind := func(dev, backing string) {
		t.Helper()
		dir := filepath.Join(sys, dev, "loop")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if backing != "" {
			if err := os.WriteFile(filepath.Join(dir, "backing_file"), []byte(backing+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	bind("loop0", "/mnt/a/vm.img")
	bind("loop1", "/mnt/a/vm2.img")
	bind("loop2", "") // not bound
	bind("loop3", "/mnt/a/vm.img")
	got := loopDevices{sysBlock: sys}.byBackingFile()
	want := map[string][]string{
		"/mnt/a/vm.img":  {"/dev/loop0", "/dev/loop3"},
		"/mnt/a/vm2.img": {"/dev/loop1"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("byBackingFile: got %q, want %q", got, want)
	}
}
