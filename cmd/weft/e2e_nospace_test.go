package main

import (
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// mountTmpfs mounts a tmpfs of the given size (e.g. "160m") on a fresh
// directory and unmounts it when the test ends. It skips the test where
// mounting is not possible (not root, no permission).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// TestCLIOutOfSpace fills a small file system: the import that does not fit
// fails with "out of space" and everything stored before still reads back.
func TestCLIOutOfSpace(t *testing.T) {
	weftBinary(t)
	home := filepath.Join(mountTmpfs(t, "160m"), "home")
	h := newHarness(t, home) // registered after the unmount, so it runs first
	h.ok("init", "--nbd", "off")
	h.startDaemon()

	imgA := testImage(t, 4)
	wantA := padTo(imgA, blockSize)
	h.ok("disk", "import", "a", writeTemp(t, "a.img", imgA))
	h.ok("replica", "create", "a", "r1")

	rng := rand.New(rand.NewChaCha8([32]byte{5}))
	huge := make([]byte, 192<<20)
	for i := 0; i+8 <= len(huge); i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			huge[i+j] = byte(v >> (8 * j))
		}
	}
	path := writeTemp(t, "huge.img", huge)
	huge = nil
	h.fails("out of space", "disk", "import", "huge", path)

	h.wantContent("a", wantA)
	h.wantContent("a@r1", wantA)
	h.ok("status")
	h.stopDaemon()
	h.startDaemon()
	h.wantContent("a", wantA)
	h.stopDaemon()
}
