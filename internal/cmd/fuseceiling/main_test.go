package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCeilingFile checks what the benchmark relies on: the file has its
// size, takes writes anywhere inside it, reads zeros whatever was written,
// and the mount goes away when the context ends.
func TestCeilingFile(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("needs /dev/fuse: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("mounts with mount(2), which needs root")
	}
	dir := t.TempDir()
	const size = 8 << 20
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ready, served := make(chan struct{}), make(chan error, 1)
	go func() { served <- serve(ctx, dir, size, ready) }()
	select {
	case <-ready:
	case err := <-served:
		t.Fatalf("serve: %v", err)
	}

	path := filepath.Join(dir, fileName)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := f.Stat(); err != nil || st.Size() != size {
		t.Fatalf("stat: %v, size %d, want %d", err, st.Size(), size)
	}
	data := bytes.Repeat([]byte{0xa5}, 1<<20)
	if n, err := f.WriteAt(data, size-1<<20); err != nil || n != len(data) {
		t.Fatalf("write: %d, %v", n, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	if _, err := f.WriteAt(data, size); err == nil {
		t.Fatal("a write past the end succeeded")
	}
	if err := f.Truncate(size / 2); err == nil {
		t.Fatal("truncate succeeded")
	}
	f.Close()
	// A new open drops the page cache (no keep-cache), so this reads
	// from the server.
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != size || !bytes.Equal(got, make([]byte, size)) {
		t.Fatalf("read %d bytes, want %d zeros", len(got), size)
	}

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("the file is still there after unmount")
	}
}
