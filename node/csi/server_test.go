package csi

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListenEndpoints(t *testing.T) {
	dir := t.TempDir()
	if _, err := Listen("unix://tmp/x.sock"); err == nil || !strings.Contains(err.Error(), "host") {
		t.Fatalf("Listen unix://tmp/x.sock: %v, want refused for naming a host", err)
	}

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen("unix://" + file); err == nil {
		t.Fatal("Listen on a regular file: no error, want refused")
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Fatalf("the regular file at the endpoint: %q, %v; want it kept", b, err)
	}

	sock := filepath.Join(dir, "csi.sock")
	live, err := Listen("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen("unix://" + sock); err == nil {
		t.Fatal("Listen on a socket a live plugin serves: no error, want refused")
	}
	live.(*net.UnixListener).SetUnlinkOnClose(false)
	live.Close() // a plugin that died: its socket file stays
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	l, err := Listen("unix:" + sock)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	l.Close()
}
