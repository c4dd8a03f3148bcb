package node

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestLoopDevices finds the loop devices backed by a disk's file in a
// sysfs tree: bound ones whose backing file is the disk's file in a mount,
// and no others.
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
	bind("loop3", "/mnt/b/vm.img")
	bind("loop4", "/elsewhere/vm.img")
	l := loopDevices{sysBlock: sys, files: func(disk string) []string {
		return []string{"/mnt/a/" + disk + ".img", "/mnt/b/" + disk + ".img"}
	}}
	got := l.diskUsers("vm")
	want := []string{"loop device /dev/loop0 (/mnt/a/vm.img)", "loop device /dev/loop3 (/mnt/b/vm.img)"}
	if !slices.Equal(got, want) {
		t.Fatalf("diskUsers(vm): got %q, want %q", got, want)
	}
	if got := l.diskUsers("db"); len(got) != 0 {
		t.Fatalf("diskUsers(db): got %q, want none", got)
	}
	l.files = func(string) []string { return nil }
	if got := l.diskUsers("vm"); len(got) != 0 {
		t.Fatalf("diskUsers(vm) with no mounts: got %q, want none", got)
	}
}
