package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestFloorMovesEveryByte runs the floor over loopback: the file holds
// every record sent, and each one checks out against its digest.
func TestFloorMovesEveryByte(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "floor.img")
	cfg := config{payload: 8 << 20, request: 4 << 20, from: "127.0.0.1", to: "127.0.0.1"}
	if err := run(ctx, cfg, path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 * 64 * recordSize; len(data) != want {
		t.Fatalf("file of %d bytes, want %d", len(data), want)
	}
	if err := verify(data); err != nil {
		t.Fatalf("verify the written records: %v", err)
	}
}

// TestVerifyRefusesBadBlock flips one byte of a block: verify must notice.
func TestVerifyRefusesBadBlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "floor.img")
	cfg := config{payload: 4 << 20, request: 4 << 20, from: "127.0.0.1", to: "127.0.0.1"}
	if err := run(context.Background(), cfg, path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[5*recordSize+digestSize+100] ^= 1
	if err := verify(data); !errors.Is(err, errBadBlock) {
		t.Fatalf("got %v, want errBadBlock", err)
	}
}

// TestDiscardWritesNothing runs the ceiling: every block is still
// verified, but no file is made.
func TestDiscardWritesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "floor.img")
	cfg := config{payload: 8 << 20, request: 4 << 20, from: "127.0.0.1", to: "127.0.0.1", discard: true}
	if err := run(ctx, cfg, path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat %s: %v, want no file", path, err)
	}
}
