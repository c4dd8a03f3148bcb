package dockervol

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestServeRefusesLiveSocket: a socket another process answers on is left
// alone; a dead one (nobody listens) is replaced.
func TestServeRefusesLiveSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "dv") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "weft.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = Serve(ctx, path, http.NotFoundHandler())
	if !errors.Is(err, ErrSocketInUse) {
		t.Fatalf("Serve on a live socket: %v, want ErrSocketInUse", err)
	}
	if c, err := net.Dial("unix", path); err != nil {
		t.Fatalf("the live socket was taken away: %v", err)
	} else {
		c.Close()
	}
	// Dead: the listener is closed but the file stays, as after a crash.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	sctx, scancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Serve(sctx, path, http.NotFoundHandler()) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Serve did not replace a dead socket")
		}
		time.Sleep(10 * time.Millisecond)
	}
	scancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
